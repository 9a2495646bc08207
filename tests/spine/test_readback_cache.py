"""Reading stored transactions back while new ones are remembered (PostgreSQL).

The leader keeps the bodies it stored itself in memory (``EventQueueStore.remember``,
bounded) and reads the others from the database. A read that awaited the database while
new transactions were remembered used to lose the ones evicted meanwhile: neither in
memory nor read, they came back empty and were marked done unhandled. Found by the ingest
benchmark, whose intake outran the dispatcher by more than the memory bound.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from mautrix.util.async_db import Database

from bridge.spine.queue import RECENT_TXNS, EventQueueStore
from tests.helpers import message_event


@pytest.mark.parametrize("db_uri", ["postgres"], indirect=True)
async def test_a_read_loses_nothing_while_memory_turns_over(db: Database) -> None:
    store = EventQueueStore(db)
    await store.open()
    expected: dict[int, list[str]] = {}
    for t in range(RECENT_TXNS + 1):
        events = [message_event("!r:x", t * 10 + i) for i in range(2)]
        body = json.dumps({"events": events}).encode()
        seq = await store.store_transaction(f"t{t}", body, len(events))
        assert seq is not None
        expected[seq] = [ev["event_id"] for ev in events]
        if t:  # the first is read from the database: the read awaits it
            store.remember(seq, events)
    read = asyncio.create_task(store.pending(0, limit=RECENT_TXNS + 1))
    fresh = 10_000
    while not read.done():  # other transactions are remembered while the read awaits
        store.remember(fresh, [])
        fresh += 1
        await asyncio.sleep(0)
    got = {txn.seq: [ev["event_id"] for ev in txn.events] for txn in read.result()}
    assert got == expected
    await store.close()
