"""A transaction stored before its body was parsed, and the counts written after.

On PostgreSQL the intake sends a transaction's insert, then parses and validates its
body while the database commits it (``EventQueueStore.begin_store``). The row is stored
``UNCOUNTED``: its event count is written a moment later, many rows in one statement
(``UncountedRows``). Only the ``queue_depth`` gauge reads counts, and it counts a row
without one itself; so the counts' writes need not be synced, nor be on the ack path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mautrix.util.async_db import Database

from bridge.db.txn import write_transaction
from bridge.spine.validate import TransactionError, transaction_events

log = logging.getLogger("santeguard.queue")

#: ``event_count`` of a row stored before its body was parsed, until its count is written.
UNCOUNTED = -1
#: The counts of those rows are written together, at most this often.
COUNT_FLUSH_S = 0.05
#: Counts held for writing at most (a database down for long): beyond, the oldest go,
#: and ``depth`` reads those rows' bodies instead.
COUNTS_HELD = 10_000


def checked_events(body: bytes) -> list[dict[str, Any]] | None:
    """The events of a row stored ``UNCOUNTED`` (before its body was validated), checked
    as the intake checks them; None for a body the intake refuses or will refuse.

    Such a row is visible to readers (the dispatcher reading back, another replica) from
    its commit until the intake, having refused its body, deletes it; a crash in between
    leaves it for good. Its events must then never be handled: the homeserver got no 200.
    """
    try:
        return transaction_events(json.loads(body), raw=body)
    except (ValueError, RecursionError, TransactionError):
        return None


class PendingStore:
    """A transaction whose insert is under way in the database while the intake parses
    its body."""

    def __init__(
        self,
        insert: asyncio.Task[int | None],
        count: Callable[[int, int], None],
        drop: Callable[[int], Awaitable[None]],
    ) -> None:
        self._insert = insert
        self._count = count
        self._drop = drop

    async def stored(self, event_count: int) -> int | None:
        """Once committed: the row's sequence number (None for a replay). Its count is
        written a moment later, with others."""
        seq = await self._insert
        if seq is not None:
            self._count(seq, event_count)
        return seq

    async def refused(self) -> None:
        """The body was refused after its insert began: the row is deleted, committed
        before this returns (a replay inserted none, and the row it repeats stays).
        Raises if the insert or the deletion failed (stored or not, nobody knows: the
        caller answers 503 and the homeserver tries again)."""
        seq = await self._insert
        if seq is not None:
            await self._drop(seq)


class UncountedRows:
    """Event counts of rows stored ``UNCOUNTED``, held until written in one statement
    (PostgreSQL); on failure, written again with growing pauses."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._held: dict[int, int] = {}  # seq -> event count
        self._writer: asyncio.Task[None] | None = None

    def add(self, seq: int, event_count: int) -> None:
        self._held[seq] = event_count
        while len(self._held) > COUNTS_HELD:
            self._held.pop(next(iter(self._held)))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_soon(), name="santeguard-txn-counts")

    def get(self, seq: int) -> int | None:
        """The count of a row not yet written, if this process stored it."""
        return self._held.get(seq)

    async def _write_soon(self) -> None:
        delay = COUNT_FLUSH_S
        try:
            while self._held:
                await asyncio.sleep(delay)
                try:
                    await self.write()
                except Exception as e:
                    if delay == COUNT_FLUSH_S:  # once per failure episode
                        log.warning("Could not write transaction counts (%s); retrying", e)
                    delay = min(delay * 2, 5.0)
                else:
                    delay = COUNT_FLUSH_S
        finally:
            self._writer = None

    async def write(self) -> None:
        """Write every count held (one statement, not synced)."""
        batch = dict(self._held)
        async with write_transaction(self._db, synced=False) as conn:
            await conn.execute(
                "UPDATE txn SET event_count = c.n "
                "FROM unnest($1::bigint[], $2::int[]) AS c(seq, n) WHERE txn.seq = c.seq",
                list(batch),
                list(batch.values()),
            )
        for seq, count in batch.items():
            if self._held.get(seq) == count:
                del self._held[seq]

    async def close(self) -> None:
        """Stop the writer, then write what is held (best effort: 5 s)."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self._held:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.write(), 5)
