"""A stream of transactions comes first, for a bounded time: while the intake stores one
transaction after another, the room workers step aside, and each room still gets a
turn every ``MAX_STEP_ASIDE_S``. Once the stream ends, everything is handled.

Ingest is simulated on the store's ``IntakeActivity`` with a long grace, so a slow test
machine cannot open a gap in the stream by accident; the bounds are loose for the same
reason (this is behaviour, not speed).
"""

from __future__ import annotations

import asyncio
import time

from mautrix.util.async_db import Database

from bridge.spine.dispatch.rooms import MAX_STEP_ASIDE_S
from bridge.spine.intake import IntakeActivity
from bridge.spine.queue import EventQueueStore
from tests.spine.test_dispatch_isolation import (
    Handler,
    Traffic,
    deliver,
    dispatcher,
    store,  # noqa: F401  (fixture)
    until,
)


async def test_handlers_wait_for_a_stream_then_get_their_turn(
    db: Database,
    store: EventQueueStore,  # noqa: F811
) -> None:
    store.intake = IntakeActivity(grace=0.05)
    handler = Handler()
    first: list[float] = []
    inner = handler.__call__

    async def timed(ev: dict) -> bool:  # type: ignore[type-arg]
        first.append(time.perf_counter())
        return await inner(ev)

    disp = dispatcher(store, timed)  # type: ignore[arg-type]
    await disp.start()
    traffic = Traffic(["!a:santeguard.test", "!b:santeguard.test"])
    stop = asyncio.Event()

    async def stream() -> None:
        while not stop.is_set():
            with store.intake.storing():
                await asyncio.sleep(0.002)
            await asyncio.sleep(0.001)  # well inside the grace

    task = asyncio.create_task(stream())
    try:
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        await deliver(store, disp, traffic.txn_id(), traffic.batch(6))
        await until(lambda: bool(first), timeout=MAX_STEP_ASIDE_S + 10)
        waited = first[0] - started
        assert not task.done()  # the stream was still going when the first event ran
        assert waited >= 0.8 * MAX_STEP_ASIDE_S  # acks first ...
        assert waited < MAX_STEP_ASIDE_S + 5  # ... for a bounded time
    finally:
        stop.set()
        await task
    await until(lambda: traffic.served(handler, traffic.rooms), timeout=30)
    assert handler.errors == []
    await disp.stop()


async def test_a_lone_transaction_is_handled_without_waiting(
    db: Database,
    store: EventQueueStore,  # noqa: F811
) -> None:
    handler = Handler()
    disp = dispatcher(store, handler)
    await disp.start()
    traffic = Traffic(["!a:santeguard.test"])
    started = time.perf_counter()
    await deliver(store, disp, traffic.txn_id(), traffic.batch(3))
    await until(lambda: traffic.served(handler, traffic.rooms), timeout=30)
    assert time.perf_counter() - started < MAX_STEP_ASIDE_S  # the grace only (2 ms)
    await disp.stop()
