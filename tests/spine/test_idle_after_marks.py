"""``Dispatcher.wait_idle`` returns only once the done marks are committed.

A flush takes the batch of handled transactions off the list before its commit returns;
on PostgreSQL that commit suspends, and anything that checked idleness meanwhile (a room
worker ending) reported idle with the rows still ``pending``. Seen as a rare failure of
``tests/spine/test_dispatch_isolation.py`` on PostgreSQL; here the commit is held open so
the window is certain.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from mautrix.util.async_db import Database

from bridge.spine.queue import EventQueueStore
from tests.spine.test_dispatch_isolation import Handler, Traffic, deliver, dispatcher, pending_txns


class HeldMarks(EventQueueStore):
    """Done marks wait for ``release`` before they are committed."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, sqlite_synchronous="normal")
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def mark_done(self, seqs: list[int]) -> None:
        self.entered.set()
        await self.release.wait()
        await super().mark_done(seqs)


@pytest.fixture
async def held(db: Database) -> AsyncIterator[HeldMarks]:
    store = HeldMarks(db)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_not_idle_while_done_marks_are_being_committed(db: Database, held: HeldMarks) -> None:
    handler = Handler()
    disp = dispatcher(held, handler)
    await disp.start()
    try:
        traffic = Traffic(["!a:x", "!b:x"])
        await deliver(held, disp, traffic.txn_id(), traffic.batch(4))
        await asyncio.wait_for(held.entered.wait(), 10)  # handled; its mark is in flight
        assert handler.count == 4
        disp._state.update_idle()  # what a room worker ending does meanwhile
        with pytest.raises(TimeoutError):
            await disp.wait_idle(timeout=0.3)
        assert await pending_txns(db) == 1
        held.release.set()
        await disp.wait_idle(timeout=10)
        assert await pending_txns(db) == 0
    finally:
        held.release.set()
        await disp.stop()
