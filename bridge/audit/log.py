"""Tamper-evident audit log: a SHA-256 hash chain over every decision SantéGuard makes.

Each entry's hash covers the previous entry's hash and the entry's canonical JSON, so
editing, deleting or reordering any stored entry breaks ``verify()`` from that point on.
Deleting the *last* entries does not break the chain: the signed checkpoints of
:mod:`bridge.audit.sealer` catch that.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Database, Scheme

from bridge.audit.chain import GENESIS, ChainCheck, check_chain, entry_hash
from bridge.db.replay import needs_sync
from bridge.db.sqlite_writer import SQLiteWriter
from bridge.db.txn import write_transaction

# json.dumps(details, ensure_ascii=False, sort_keys=True), without building an encoder
# per call. The hash covers the stored text, whatever its spacing.
_DETAILS = json.JSONEncoder(ensure_ascii=False, sort_keys=True)
#: The advisory lock that serialises appends of several replicas (one per schema).
AUDIT_LOCK = "hashtext('santeguard-audit'), hashtext(current_schema())"
_COLUMNS = ("ts", "actor", "action", "room_id", "subject", "details", "prev_hash", "hash")
_INSERT = (
    "INSERT INTO audit_log (ts, actor, action, room_id, subject, details, prev_hash, hash) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)


def _insert_one(entry: tuple[Any, ...], conn: sqlite3.Connection) -> None:
    conn.execute(_INSERT_SQLITE, entry)


_INSERT_SQLITE = re.sub(r"\$\d+", "?", _INSERT)


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


class AuditLog:
    """Appends are committed in groups; reads are free.

    The gate records a decision on the path of a homeserver request, so records are
    *group-committed*: each ``record`` joins the pending batch and returns once the
    batch holding it is committed. Under load many decisions share one commit; alone,
    a decision waits for one commit. No caller is told "recorded" before its entry is
    durable, except with ``synced=False``: the entry is committed (a crash of SantéGuard
    keeps it) and reaches the disk within 200 ms (SQLite: see
    ``bridge.db.sqlite_writer``; PostgreSQL: ``synchronous_commit = off`` for that
    commit, flushed by the WAL writer). The gate's refusals use it, and so does what the
    dispatcher records while handling a stored event (a replay records it again): they
    wait for the commit, not for an fsync; a batch holding any synced entry is fsync'd
    whole.

    One chain, whoever appends: on PostgreSQL, several replicas append to the same log,
    so each batch is chained at commit time, under a transaction-level advisory lock, onto
    the head read from the database. On SQLite (one process) the head is kept in memory;
    if a commit fails it is reloaded and every waiter of that batch gets the error.
    """

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock
        self._writer: SQLiteWriter | None = None
        self._head: str | None = None
        self._shared = db.scheme != Scheme.SQLITE
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[str], bool]] = []
        self._flushing: asyncio.Task[None] | None = None

    def use_writer(self, writer: SQLiteWriter | None) -> None:
        """On SQLite, commit through the intake's dedicated writer (one cheap inline
        commit, no thread hops): the gate waits for these commits."""
        self._writer = writer

    async def _insert(self, rows: list[tuple[Any, ...]], synced: bool) -> None:
        if self._writer is not None:
            await self._writer.executemany(_INSERT, rows, synced=synced)
            return
        async with write_transaction(self.db) as conn:
            await conn.executemany(_INSERT, rows)

    async def _insert_shared(self, entries: list[tuple[Any, ...]], synced: bool) -> list[str]:
        """Chain ``entries`` onto the database's head and commit them (PostgreSQL)."""
        async with write_transaction(self.db, synced=synced) as conn:
            await conn.execute(f"SELECT pg_advisory_xact_lock({AUDIT_LOCK})")
            head = await conn.fetchval("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            if not head:
                head = await conn.fetchval("SELECT hash FROM audit_anchor WHERE id = 1")
            prev = str(head) if head else GENESIS
            rows, digests = [], []
            for ts, actor, action, room_id, subject, details_json in entries:
                digest = entry_hash(prev, ts, actor, action, room_id, subject, details_json)
                rows.append((ts, actor, action, room_id, subject, details_json, prev, digest))
                digests.append(digest)
                prev = digest
            # Binary COPY: the rows keep their order, and their seq follows it.
            await conn.copy_records_to_table("audit_log", records=rows, columns=_COLUMNS)
        return digests

    async def _chain_head(self) -> str:
        if self._head is None:
            prev = await self.db.fetchval("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            if not prev:  # an empty log: it goes on from where pruning left it, if it was
                prev = await self.db.fetchval("SELECT hash FROM audit_anchor WHERE id = 1")
            # Another record may have set the head while we were reading.
            if self._head is None:
                self._head = str(prev) if prev else GENESIS
        return self._head

    async def record(
        self,
        actor: str,
        action: str,
        *,
        room_id: str | None = None,
        subject: str | None = None,
        details: dict[str, Any] | None = None,
        synced: bool | None = None,
    ) -> str:
        """Append one entry; return its hash once it is committed (see the class's doc
        for ``synced``; None: synced unless a replay would record it again,
        ``bridge.db.replay``)."""
        synced = needs_sync(synced)
        details_json = _DETAILS.encode(details or {})
        ts = int(self._clock() * 1000)
        entry: tuple[Any, ...] = (ts, actor, action, room_id, subject, details_json)
        if not self._shared:
            prev_hash = self._head
            if prev_hash is None:
                prev_hash = await self._chain_head()
                prev_hash = self._head or prev_hash  # the head after any concurrent appends
            digest = entry_hash(prev_hash, *entry)
            self._head = digest
            entry = (*entry, prev_hash, digest)
        # One future per caller (not shared, not shielded): a caller that is cancelled
        # cancels only its own wait; its entry is committed with the batch all the same.
        if (
            not self._shared
            and self._writer is not None
            and not self._pending
            and (self._flushing is None or self._flushing.done())
        ):
            # Nothing else in flight: commit here if the writer can without an fsync
            # (the gate's refusals), sparing two turns of the event loop.
            try:
                committed, _ = self._writer.try_now(
                    functools.partial(_insert_one, entry), synced=synced
                )
            except Exception:
                self._head = None  # reloaded from the database by the next record
                raise
            if committed:
                return str(entry[-1])
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, done, synced))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush(), name="santeguard-audit")
        return await done

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            synced = any(s for _, _, s in batch)
            try:
                if self._shared:
                    digests = await self._insert_shared([e for e, _, _ in batch], synced)
                else:
                    await self._insert([e for e, _, _ in batch], synced)
                    digests = [entry[-1] for entry, _, _ in batch]
            except Exception as e:
                failed = batch
                if not self._shared:
                    # Entries appended after this batch chained onto lost hashes: fail them.
                    failed = batch + self._pending
                    self._pending = []
                    self._head = None
                for _, fut, _ in failed:
                    if not fut.done():
                        fut.set_exception(e)
                if not self._shared:
                    return
                continue
            for (_, fut, _), digest in zip(batch, digests, strict=True):
                if not fut.done():
                    fut.set_result(digest)

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
        """Recompute the whole chain (from the pruning anchor, if the log was pruned);
        report the first entry that does not match. ``santeguard audit verify`` checks
        the checkpoints too (``bridge.audit.store.verify_database``)."""
        rows = await self.db.fetch(
            "SELECT seq, ts, actor, action, room_id, subject, details, prev_hash, hash "
            "FROM audit_log ORDER BY seq"
        )
        start = await self.db.fetchval("SELECT hash FROM audit_anchor WHERE id = 1")
        return check_chain(rows, start or GENESIS)
