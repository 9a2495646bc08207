"""Durable transaction intake and per-event queue.

The ack path does one thing: insert the transaction's raw body in one row and commit.
Expansion into per-event rows, and handling, happen after the ack from what was stored,
so a crash at any point loses nothing and a replayed ``txnId`` is never processed twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Database, Scheme


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    seq: int
    room_id: str
    event_id: str
    event_type: str
    body: str
    attempts: int

    def content(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


def _now_ms() -> int:
    return int(time.time() * 1000)


class EventQueueStore:
    """SQL for the ``txn`` and ``event_queue`` tables, on SQLite or PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def store_transaction(self, txn_id: str, body: bytes) -> bool:
        """Commit the raw transaction; return False if this ``txn_id`` was already stored."""
        status = await self.db.execute(
            "INSERT INTO txn (txn_id, body, received_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (txn_id) DO NOTHING",
            txn_id,
            body,
            _now_ms(),
        )
        if self.db.scheme == Scheme.SQLITE:
            return int(status.rowcount) == 1  # type: ignore[union-attr]
        return str(status).endswith(" 1")

    async def expand_pending(self, limit: int = 100) -> int:
        """Move events of stored-but-unexpanded transactions into ``event_queue``.

        Each transaction is expanded in one DB transaction together with its
        ``expanded`` flag, so it is expanded exactly once. Events already queued (same
        ``event_id`` in another transaction) are skipped.
        """
        rows = await self.db.fetch(
            "SELECT seq, body FROM txn WHERE expanded = false ORDER BY seq LIMIT $1", limit
        )
        count = 0
        for row in rows:
            seq = int(row["seq"])
            events = _events_of(bytes(row["body"]))
            values = [
                (seq, ev["event_id"], ev["room_id"], ev["type"], json.dumps(ev, ensure_ascii=False))
                for ev in events
            ]
            async with self.db.acquire() as conn, conn.transaction():
                if values:
                    await conn.executemany(
                        "INSERT INTO event_queue (txn_seq, event_id, room_id, event_type, body) "
                        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
                        values,
                    )
                await conn.execute("UPDATE txn SET expanded = true WHERE seq = $1", seq)
            count += len(values)
        return count

    async def pending_events(self, after_seq: int, limit: int = 1000) -> list[QueuedEvent]:
        rows = await self.db.fetch(
            "SELECT seq, room_id, event_id, event_type, body, attempts FROM event_queue "
            "WHERE status = 'pending' AND seq > $1 ORDER BY seq LIMIT $2",
            after_seq,
            limit,
        )
        return [
            QueuedEvent(
                seq=int(r["seq"]),
                room_id=r["room_id"],
                event_id=r["event_id"],
                event_type=r["event_type"],
                body=r["body"],
                attempts=int(r["attempts"]),
            )
            for r in rows
        ]

    async def mark_done(self, seq: int) -> None:
        await self.db.execute(
            "UPDATE event_queue SET status = 'done', done_at = $2 WHERE seq = $1", seq, _now_ms()
        )

    async def mark_attempt(self, seq: int, error: str, *, final: bool) -> None:
        await self.db.execute(
            "UPDATE event_queue SET attempts = attempts + 1, last_error = $2, status = $3 "
            "WHERE seq = $1",
            seq,
            error[:500],
            "failed" if final else "pending",
        )

    async def depth(self) -> int:
        """Events not yet handled, counting unexpanded transactions' events as well."""
        pending = await self.db.fetchval("SELECT COUNT(*) FROM event_queue WHERE status = 'pending'")
        unexpanded = await self.db.fetchval("SELECT COUNT(*) FROM txn WHERE expanded = false")
        return int(pending or 0) + int(unexpanded or 0)

    async def failed_count(self) -> int:
        return int(
            await self.db.fetchval("SELECT COUNT(*) FROM event_queue WHERE status = 'failed'") or 0
        )

    async def has_unexpanded(self) -> bool:
        return bool(await self.db.fetchval("SELECT COUNT(*) FROM txn WHERE expanded = false"))


def _events_of(body: bytes) -> list[dict[str, Any]]:
    """The room events of a stored body (validated at intake, so shape is known)."""
    data = json.loads(body)
    events = data.get("events") or []
    return [ev for ev in events if isinstance(ev, dict) and "event_id" in ev and "room_id" in ev]
