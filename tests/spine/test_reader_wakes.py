"""A stream past the in-memory cap does not wake the database reader once per transaction.

While the rooms' queues hold more than half the cap, the reader cannot read (it waits for
them to drain): waking it for every transaction left to the database only cost the
intake a task step per transaction. The room workers wake it once they have drained, and
the backlog is still read back in full, in order.
"""

from __future__ import annotations

import asyncio
import json

from mautrix.util.async_db import Database

from bridge.spine.queue import EventQueueStore
from tests.spine.test_dispatch_isolation import (
    Handler,
    Traffic,
    deliver,
    dispatcher,
    pending_txns,
    store,  # noqa: F401 (fixture)
)


async def test_the_reader_is_not_woken_per_transaction_while_memory_is_full(
    db: Database,
    store: EventQueueStore,  # noqa: F811
) -> None:
    rooms = [f"!r{i}:x" for i in range(10)]
    traffic = Traffic(rooms)
    handler = Handler()
    handler.gate.clear()  # nothing is handled: the queues stay full
    cap = 100
    disp = dispatcher(store, handler, max_in_memory_events=cap)
    checks = 0
    want_read = disp._readback._want_read

    def counted() -> bool:
        nonlocal checks
        checks += 1
        return want_read()

    disp._readback._want_read = counted  # type: ignore[method-assign]
    await disp.start()
    try:
        for _ in range(300):  # 10 events each: 3,000 events against a cap of 100
            await deliver(store, disp, traffic.txn_id(), traffic.batch(10))
        assert disp.in_memory <= cap
        assert checks < 10  # was one per transaction past the cap (~290)
        handler.gate.set()
        await disp.wait_idle(timeout=60)
        assert traffic.served(handler, rooms)
        assert handler.errors == []  # every event once, in order
        assert handler.count == 3000
        assert await pending_txns(db) == 0
    finally:
        await disp.stop()


async def test_the_leaders_stream_wakes_the_reader_only_when_it_can_read(
    db: Database,
    store: EventQueueStore,  # noqa: F811
) -> None:
    """The leader of several replicas reads every transaction back from the database
    (``Leadership.stored``): each one stored only says there is more to read."""
    rooms = [f"!r{i}:x" for i in range(10)]
    traffic = Traffic(rooms)
    handler = Handler()
    handler.gate.clear()
    cap = 100
    disp = dispatcher(store, handler, max_in_memory_events=cap)
    checks = 0
    want_read = disp._readback._want_read

    def counted() -> bool:
        nonlocal checks
        checks += 1
        return want_read()

    disp._readback._want_read = counted  # type: ignore[method-assign]
    await disp.start()
    try:
        await disp.wait_idle(timeout=10)
        for _ in range(100):
            events = traffic.batch(10)
            body = json.dumps({"events": events}).encode()
            assert await store.store_transaction(traffic.txn_id(), body, len(events))
            disp.wake_soon()
            await asyncio.sleep(0)  # the homeserver's pause between transactions
        await asyncio.sleep(0.2)  # the reads it could make are made
        assert 0 < disp.in_memory <= cap
        first = checks
        for _ in range(200):  # the queues are full: nothing to read for now
            events = traffic.batch(10)
            body = json.dumps({"events": events}).encode()
            assert await store.store_transaction(traffic.txn_id(), body, len(events))
            disp.wake_soon()
            await asyncio.sleep(0)
        assert checks - first < 10  # was one per transaction (200)
        handler.gate.set()
        await disp.wait_idle(timeout=60)
        assert traffic.served(handler, rooms)
        assert handler.errors == []
        assert handler.count == 3000
        assert await pending_txns(db) == 0
    finally:
        await disp.stop()
