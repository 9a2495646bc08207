"""Tamper-evident audit log: a SHA-256 hash chain over every decision SantéGuard makes.

Each entry's hash covers the previous entry's hash and the entry's canonical JSON, so
editing, deleting or reordering any stored entry breaks ``verify()`` from that point on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Database

from .txn import write_transaction

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    ts: int
    actor: str
    action: str
    room_id: str | None
    subject: str | None
    details: dict[str, Any]
    hash: str


def entry_hash(
    prev_hash: str,
    ts: int,
    actor: str,
    action: str,
    room_id: str | None,
    subject: str | None,
    details_json: str,
) -> str:
    """Pure: the chained hash of one entry."""
    material = json.dumps(
        [prev_hash, ts, actor, action, room_id, subject, details_json],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainCheck:
    ok: bool
    entries: int
    first_bad_seq: int | None = None


class AuditLog:
    """Appends are serialised (one chain), reads are free."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = asyncio.Lock()

    async def record(
        self,
        actor: str,
        action: str,
        *,
        room_id: str | None = None,
        subject: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> str:
        details_json = json.dumps(details or {}, ensure_ascii=False, sort_keys=True)
        ts = int(time.time() * 1000)
        async with self._lock, write_transaction(self.db) as conn:
            prev = await conn.fetchval("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            prev_hash = str(prev) if prev else GENESIS
            digest = entry_hash(prev_hash, ts, actor, action, room_id, subject, details_json)
            await conn.execute(
                "INSERT INTO audit_log (ts, actor, action, room_id, subject, details, "
                "prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                ts,
                actor,
                action,
                room_id,
                subject,
                details_json,
                prev_hash,
                digest,
            )
        return digest

    async def recent(self, limit: int = 20, room_id: str | None = None) -> list[AuditEntry]:
        if room_id:
            rows = await self.db.fetch(
                "SELECT * FROM audit_log WHERE room_id = $1 ORDER BY seq DESC LIMIT $2",
                room_id,
                limit,
            )
        else:
            rows = await self.db.fetch("SELECT * FROM audit_log ORDER BY seq DESC LIMIT $1", limit)
        return [
            AuditEntry(
                seq=int(r["seq"]),
                ts=int(r["ts"]),
                actor=r["actor"],
                action=r["action"],
                room_id=r["room_id"],
                subject=r["subject"],
                details=json.loads(r["details"]),
                hash=r["hash"],
            )
            for r in rows
        ]

    async def verify(self) -> ChainCheck:
        """Recompute the whole chain; report the first entry that does not match."""
        rows = await self.db.fetch(
            "SELECT seq, ts, actor, action, room_id, subject, details, prev_hash, hash "
            "FROM audit_log ORDER BY seq"
        )
        prev_hash = GENESIS
        for r in rows:
            expected = entry_hash(
                prev_hash,
                int(r["ts"]),
                r["actor"],
                r["action"],
                r["room_id"],
                r["subject"],
                r["details"],
            )
            if r["prev_hash"] != prev_hash or r["hash"] != expected:
                return ChainCheck(False, len(rows), int(r["seq"]))
            prev_hash = expected
        return ChainCheck(True, len(rows))
