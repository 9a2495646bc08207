"""The event ledger: every room event SantéGuard has seen — its ID, room, type, time,
whether it is state and whether SantéGuard sent it — never its content.

It is what the purge-proof audit checks against the homeserver, and where the last
activity of a room is read. :class:`LedgerSubscriber` feeds it from the dispatcher
without waiting for the database: an event is queued in memory and written in batches
(one multi-row ``INSERT … ON CONFLICT DO NOTHING`` per batch) by a background task, so
the dispatcher's hot path pays a list append. The price: a crash loses the entries not
yet written (at most one batch, milliseconds of traffic). The audit does not rely on the
ledger alone — it also pages the room's history from its start through the admin API —
so a missing entry lowers the count of events proven gone, never hides a violation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Database

from bridge.core.ports import EPHEMERAL, RoutesPort
from bridge.db.sqlite_writer import SQLiteWriter
from bridge.db.txn import write_transaction

log = logging.getLogger("santeguard.retention.ledger")

_INSERT = (
    "INSERT INTO event_ledger (event_id, room_id, type, state, own, origin_ts, seen_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING"
)
_MARK = "UPDATE event_ledger SET purged_at = $1 WHERE event_id = $2 AND purged_at IS NULL"
LedgerRow = tuple[str, str, str, bool, bool, int, int]


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    event_id: str
    origin_ts: int
    state: bool = False


def row_of(event: dict[str, Any], own_users: frozenset[str], seen_at: int) -> LedgerRow | None:
    """The ledger row of a room event, None for anything else (ephemeral pseudo-events,
    events without an ID, room or type). Reads no content."""
    if event.get(EPHEMERAL):
        return None
    event_id, room_id, event_type = event.get("event_id"), event.get("room_id"), event.get("type")
    if not (isinstance(event_id, str) and isinstance(room_id, str) and isinstance(event_type, str)):
        return None
    ts = event.get("origin_server_ts")
    # A timestamp outside BIGINT would make the batch's insert fail on every retry,
    # holding back every entry queued after it: such an event is dated when seen.
    origin_ts = seen_at
    if isinstance(ts, int) and not isinstance(ts, bool) and 0 <= ts < 2**63:
        origin_ts = ts
    return (
        event_id,
        room_id,
        event_type,
        isinstance(event.get("state_key"), str),
        event.get("sender") in own_users,
        origin_ts,
        seen_at,
    )


class EventLedger:
    """Reads and writes of ``event_ledger`` (schema v06)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._writer: SQLiteWriter | None = None

    def use_writer(self, writer: SQLiteWriter | None) -> None:
        """On SQLite, write through the intake's dedicated writer (as the audit log does)."""
        self._writer = writer

    async def record(self, rows: list[LedgerRow]) -> None:
        """Insert rows, ignoring events already recorded (one commit)."""
        if not rows:
            return
        if self._writer is not None:
            await self._writer.executemany(_INSERT, rows)
            return
        async with write_transaction(self.db, synced=None) as conn:
            await conn.executemany(_INSERT, rows)

    async def candidates(self, room_id: str, before_ms: int, limit: int) -> list[LedgerEvent]:
        """Non-state events of the room older than ``before_ms`` not yet proven purged,
        oldest first."""
        rows = await self.db.fetch(
            "SELECT event_id, origin_ts FROM event_ledger WHERE room_id = $1 AND NOT state "
            "AND purged_at IS NULL AND origin_ts < $2 ORDER BY origin_ts, event_id LIMIT $3",
            room_id,
            before_ms,
            limit,
        )
        return [LedgerEvent(str(r["event_id"]), int(r["origin_ts"])) for r in rows]

    async def newest_before(self, room_id: str, before_ms: int) -> LedgerEvent | None:
        """The room's newest event (state or not, purged or not) older than ``before_ms``."""
        row = await self.db.fetchrow(
            "SELECT event_id, origin_ts, state FROM event_ledger WHERE room_id = $1 "
            "AND origin_ts < $2 ORDER BY origin_ts DESC, event_id DESC LIMIT 1",
            room_id,
            before_ms,
        )
        if row is None:
            return None
        return LedgerEvent(str(row["event_id"]), int(row["origin_ts"]), bool(row["state"]))

    async def mark_purged(self, event_ids: Iterable[str], at_ms: int) -> None:
        rows = [(at_ms, e) for e in event_ids]
        if rows:
            async with write_transaction(self.db) as conn:
                await conn.executemany(_MARK, rows)

    async def last_activity(self, room_id: str) -> int | None:
        """Origin time of the room's newest event not sent by SantéGuard's own users."""
        value = await self.db.fetchval(
            "SELECT MAX(origin_ts) FROM event_ledger WHERE room_id = $1 AND NOT own", room_id
        )
        return int(value) if value is not None else None

    async def last_activity_by_room(self) -> dict[str, int]:
        """:meth:`last_activity` of every room with such an event."""
        rows = await self.db.fetch(
            "SELECT room_id, MAX(origin_ts) AS ts FROM event_ledger WHERE NOT own GROUP BY room_id"
        )
        return {str(r["room_id"]): int(r["ts"]) for r in rows}

    async def rooms(self) -> list[str]:
        rows = await self.db.fetch("SELECT DISTINCT room_id FROM event_ledger ORDER BY room_id")
        return [str(r["room_id"]) for r in rows]

    async def prune(self, proven_before_ms: int) -> int:
        """Forget events proven purged before ``proven_before_ms``; return how many."""
        async with write_transaction(self.db) as conn:
            count = await conn.fetchval(
                "SELECT COUNT(*) FROM event_ledger WHERE purged_at IS NOT NULL AND purged_at < $1",
                proven_before_ms,
            )
            await conn.execute(
                "DELETE FROM event_ledger WHERE purged_at IS NOT NULL AND purged_at < $1",
                proven_before_ms,
            )
        return int(count or 0)

    async def forget_room(self, room_id: str) -> None:
        """Drop a room's entries (after the homeserver deleted the whole room)."""
        async with write_transaction(self.db) as conn:
            await conn.execute("DELETE FROM event_ledger WHERE room_id = $1", room_id)


class LedgerSubscriber:
    """Feeds the ledger from the dispatcher, in batches written in the background.

    Subscribes as a guard on every event type (``"*"``) that never refuses: guards run
    before handlers and a refusing guard ends an event's handling, so only a guard sees
    the events other guards refuse (a clear message redacted in an encrypted room is
    still stored by the homeserver). It must therefore be subscribed before any other
    ``"*"`` guard.
    """

    def __init__(
        self,
        ledger: EventLedger,
        own_users: frozenset[str],
        *,
        max_batch: int = 1000,
        max_pending: int = 100_000,
        retry_seconds: float = 1.0,
    ) -> None:
        self.ledger = ledger
        self._own = own_users
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._retry = retry_seconds
        self._pending: list[LedgerRow] = []
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.dropped = 0

    def subscribe(self, routes: RoutesPort) -> None:
        routes.guard("*", self.observe)

    async def observe(self, event: dict[str, Any]) -> bool:
        """Queue the event's ledger row; never refuses (returns False)."""
        row = row_of(event, self._own, int(time.time() * 1000))
        if row is None:
            return False
        if len(self._pending) >= self._max_pending:
            # The database has been failing for a while. Not silent: counted and logged;
            # the audit's history scan still sees these events.
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("Event ledger full: %d entries not recorded so far", self.dropped)
            return False
        self._pending.append(row)
        if self._task is None or self._task.done():
            self._idle.clear()
            self._task = asyncio.create_task(self._flush(), name="santeguard-ledger")
        return False

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                try:
                    await self.ledger.record(batch)
                except Exception as e:
                    log.warning(
                        "Event ledger write failed (%s); %d entries kept, retrying in %.0f s",
                        type(e).__name__,
                        len(self._pending),
                        self._retry,
                    )
                    await asyncio.sleep(self._retry)
                    continue
                del self._pending[: len(batch)]
        finally:
            self._idle.set()

    async def flush(self) -> None:
        """Wait until everything queued so far is written (tests, the audit, stop)."""
        while self._pending or not self._idle.is_set():
            await self._idle.wait()
            if self._pending and (self._task is None or self._task.done()):
                self._idle.clear()
                self._task = asyncio.create_task(self._flush(), name="santeguard-ledger")

    async def close(self, timeout: float = 10) -> None:
        """Write what is queued (bounded wait), then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pending:
            log.warning("Event ledger: %d entries not written at stop", len(self._pending))
