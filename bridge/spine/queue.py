"""Durable transaction intake: the stored transactions *are* the event queue.

The ack path does one thing: insert the transaction's raw body in one row and commit.
Events are read back from stored bodies for handling, and a transaction is marked done
once all its events are handled, so a crash at any point loses nothing and a replayed
``txnId`` is never processed twice. Per-event rows are written only for dead letters.

Dead-lettering must not be able to fail on what is in an event: the identifiers it keeps
are stored as written when they are valid UTF-8 text, and otherwise as their ASCII JSON
escape (a lone surrogate becomes the six characters ``\\ud800``), so no content can make
the insert raise. An unreachable database raises ``TransientError``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Database, Scheme

from bridge.core.errors import TransientError
from bridge.db.intake_journal import DEFAULT_SIZE, IntakeJournal
from bridge.db.sqlite_writer import SQLiteWriter
from bridge.db.transient import is_transient_db_error
from bridge.db.txn import write_transaction
from bridge.spine.ephemeral import receipt_events
from bridge.spine.intake import IntakeActivity
from bridge.spine.journaled import JournaledIntake, JournaledPending, journal_path
from bridge.spine.pending import UNCOUNTED, PendingStore, UncountedRows, checked_events

log = logging.getLogger("santeguard.queue")

# The dead_letter columns are TEXT; identifiers longer than this are cut (Matrix caps
# them at 255 bytes), the error text at ERROR_CHARS.
ID_CHARS = 255
#: Transactions this process stored and keeps in memory until read back (``remember``).
RECENT_TXNS = 64
ERROR_CHARS = 500
#: Longest stretch of read-back parsing between two turns of the event loop.
PARSE_SLICE_S = 0.0005


@dataclass(frozen=True, slots=True)
class StoredTxn:
    seq: int
    events: list[dict[str, Any]]


def _now_ms() -> int:
    return int(time.time() * 1000)


def events_of(body: bytes) -> list[dict[str, Any]]:
    """The room events of a stored body (its shape was validated before it was stored),
    then its read receipts as pseudo-events (see ``spine.ephemeral``)."""
    data = json.loads(body)
    events = data.get("events") or []
    room_events = [ev for ev in events if isinstance(ev, dict)]
    if "ephemeral" in data or "de.sorunome.msc2409.ephemeral" in data:
        room_events.extend(receipt_events(data))
    return room_events


def storable_text(value: object, limit: int = ID_CHARS) -> str:
    """``value`` as text that any database accepts: valid UTF-8, no NUL, at most ``limit``.

    Text that is already storable is kept as it is; anything else (a lone surrogate, a NUL,
    a non-string) is written as its ASCII JSON escape, which cannot fail to encode.
    """
    if isinstance(value, str):
        text = value
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(value, ensure_ascii=True)[1:-1]
        if "\x00" in text:
            text = json.dumps(text, ensure_ascii=True)[1:-1]
    else:
        text = json.dumps(value, ensure_ascii=True, default=repr)
    return text[:limit]


def _events_or_none(seq: int, body: bytes, event_count: int) -> list[dict[str, Any]]:
    if event_count == UNCOUNTED:
        # Stored before its body was validated (``begin_store``): checked here as well.
        events = checked_events(body)
        if events is None:
            log.info("Transaction %d was refused at intake; none of its events is handled", seq)
            return []
        return events
    try:
        return events_of(body)
    except (ValueError, AttributeError, TypeError):
        # Validated before it was stored, so only a damaged database gets here. Reading it
        # again would fail again: it is reported and handled as empty (its row is kept).
        log.error("Stored transaction %d cannot be parsed; it is skipped", seq)
        return []


class _Pause:
    """Gives the event loop back every ``PARSE_SLICE_S`` of parsing: a read-back batch
    of 50 stored bodies is 4-10 ms of JSON, and an ack must not wait behind it
    (measured: the largest stalls of the loop under ingest, 17 reads of ~10 ms)."""

    def __init__(self) -> None:
        self._since = time.perf_counter()

    async def maybe(self) -> None:
        now = time.perf_counter()
        if now - self._since >= PARSE_SLICE_S:
            await asyncio.sleep(0)
            self._since = time.perf_counter()


_INSERT_TXN = (
    "INSERT INTO txn (txn_id, body, event_count, received_at) VALUES ({}, {}, {}, {}) "
    "ON CONFLICT (txn_id) DO NOTHING RETURNING seq"
)
# A follower (replicas on PostgreSQL) tells the leader in the same statement, delivered
# at commit: the leader reads it back (bridge/cluster/feed.py). Only when a row went in.
_INSERT_TXN_NOTIFY = (
    "WITH ins AS (" + _INSERT_TXN.format("$1", "$2", "$3", "$4") + ") "
    "SELECT seq, pg_notify('santeguard_changes', current_schema() || ':txn') FROM ins"
)
# A handled transaction's status is 'handled', the same length as 'pending', and nothing
# else in its row changes: SQLite then overwrites the row in place, where a row of
# another size is written again whole, its ~60 KB body with it (measured: marking 50
# production transactions done wrote 3.5 MB to the WAL, 0.2 MB now). Rows of earlier
# versions say 'done' (and ``done_at``, no longer written): anything but 'pending' is
# handled.
_MARK_DONE = "UPDATE txn SET status = 'handled' WHERE seq = {}"


class EventQueueStore:
    """SQL for the ``txn`` and ``dead_letter`` tables, on SQLite or PostgreSQL.

    On SQLite the two hot writes (intake, done marks) go through a dedicated writer
    connection; see ``sqlite_writer``. Call ``open()`` after the database has started.
    """

    def __init__(self, db: Database, *, sqlite_synchronous: str = "full") -> None:
        self.db = db
        self._sqlite_synchronous = sqlite_synchronous
        self._writer: SQLiteWriter | None = None
        self._journaled: JournaledIntake | None = None
        self._recent: dict[int, list[dict[str, Any]]] = {}
        self.intake = IntakeActivity()
        self.counts = UncountedRows(db)

    async def open(self, *, journal: bool = False, journal_size: int = DEFAULT_SIZE) -> None:
        """Open the SQLite writer; with ``journal`` (the server's intake, SQLite with
        ``synchronous: full``), the intake journal too, replaying what a power loss took
        (``bridge.spine.journaled``). One process per journal: tools leave it off."""
        if self.db.scheme == Scheme.SQLITE:
            path = self.db.url.path
            self._writer = SQLiteWriter(path, self._sqlite_synchronous)
            if journal and self._sqlite_synchronous.lower() == "full":
                journaled = JournaledIntake(
                    self._writer, IntakeJournal(journal_path(path), journal_size)
                )
                await journaled.open()
                self._journaled = journaled

    @property
    def journaled(self) -> JournaledIntake | None:
        return self._journaled

    @property
    def writer(self) -> SQLiteWriter | None:
        """The dedicated SQLite writer (None on PostgreSQL), shared with the audit log."""
        return self._writer

    async def checkpoint(self) -> None:
        """SQLite: copy the WAL back into the database off the ack path (no-op on PostgreSQL)."""
        if self._writer is not None:
            await self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def close(self) -> None:
        await self.counts.close()
        if self._journaled is not None:
            self._journaled.close()
            self._journaled = None
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    async def store_transaction(
        self, txn_id: str, body: bytes, event_count: int, *, notify: bool = False
    ) -> int | None:
        """Commit the raw transaction and return its sequence number; with ``notify``
        (PostgreSQL), tell the other replicas' change feeds at commit.

        Returns None if this ``txn_id`` was already stored (a replay).
        """
        now = _now_ms()
        with self.intake.storing():
            if self._journaled is not None:
                rows = await self._journaled.store(txn_id, body, event_count, now)
                return int(rows[0][0]) if rows else None
            if self._writer is not None:
                sql = _INSERT_TXN.format("?", "?", "?", "?")
                rows = await self._writer.run(
                    lambda c: c.execute(sql, (txn_id, body, event_count, now)).fetchall()
                )
                return int(rows[0][0]) if rows else None
            sql = _INSERT_TXN_NOTIFY if notify else _INSERT_TXN.format("$1", "$2", "$3", "$4")
            value = await self.db.fetchval(sql, txn_id, body, event_count, now)
            return int(value) if value is not None else None

    async def begin_store(
        self, txn_id: str, body: bytes, *, notify: bool = False
    ) -> PendingStore | JournaledPending | None:
        """Start committing the raw transaction before its body is parsed; return once
        its statement is on its way (one turn of the event loop). On SQLite, journal it
        instead (``bridge.spine.journaled``), or None without a journal.

        PostgreSQL works in its own process, so the intake parses and validates the body
        meanwhile instead of before (measured: 0.25 ms of a ~1.8 ms ack, ~+25 % ingest).
        SQLite's insert and fsync would share this process's GIL with the parse: the
        hand-offs cost more than the overlap saved (measured). The count is not known
        yet: the row says ``UNCOUNTED`` until ``counts`` writes it."""
        if self._writer is not None:
            if self._journaled is None:
                return None
            return await self._journaled.begin(txn_id, body, _now_ms())
        insert = asyncio.ensure_future(
            self.store_transaction(txn_id, body, UNCOUNTED, notify=notify)
        )
        await asyncio.sleep(0)  # the insert's first step: acquire, send the statement
        return PendingStore(insert, self.counts.add, self.drop)

    async def drop(self, seq: int) -> None:
        """Delete the row of a transaction refused after ``begin_store`` stored it;
        committed (and synced) when this returns, so its events are never handled."""
        async with write_transaction(self.db, synced=True) as conn:
            await conn.execute("DELETE FROM txn WHERE seq = $1", seq)

    def remember(self, seq: int, events: list[dict[str, Any]]) -> None:
        """Keep a transaction this process just stored, so that reading it back (replicas
        on PostgreSQL: the leader reads every transaction from the database, in order)
        costs a sequence number, not its body. Bounded: the oldest are forgotten."""
        self._recent[seq] = events
        while len(self._recent) > RECENT_TXNS:
            self._recent.pop(next(iter(self._recent)))

    async def pending(
        self, after_seq: int, limit: int = 50, until_seq: int | None = None
    ) -> list[StoredTxn]:
        """Stored transactions not yet done with ``after_seq < seq <= until_seq``, in order."""
        if self._recent and self.db.scheme != Scheme.SQLITE:
            return await self._pending_cached(after_seq, limit, until_seq)
        if until_seq is None:
            rows = await self.db.fetch(
                "SELECT seq, body, event_count FROM txn WHERE status = 'pending' AND seq > $1 "
                "ORDER BY seq LIMIT $2",
                after_seq,
                limit,
            )
        else:
            rows = await self.db.fetch(
                "SELECT seq, body, event_count FROM txn WHERE status = 'pending' AND seq > $1 "
                "AND seq <= $2 ORDER BY seq LIMIT $3",
                after_seq,
                until_seq,
                limit,
            )
        out = []
        pause = _Pause()
        for r in rows:
            seq = int(r["seq"])
            out.append(StoredTxn(seq, _events_or_none(seq, bytes(r["body"]), r["event_count"])))
            await pause.maybe()
        return out

    async def _pending_cached(
        self, after_seq: int, limit: int, until_seq: int | None
    ) -> list[StoredTxn]:
        """``pending`` reading only the bodies this process does not hold already."""
        seqs = [
            int(seq)
            for (seq,) in await self.db.fetch(
                "SELECT seq FROM txn WHERE status = 'pending' AND seq > $1 "
                "AND seq <= $2 ORDER BY seq LIMIT $3",
                after_seq,
                until_seq if until_seq is not None else 2**62,
                limit,
            )
        ]
        # Taken out of memory before the read below: while it runs, ``remember`` may
        # evict the oldest entries, whose bodies would then be neither here nor read.
        held = {seq: self._recent.pop(seq) for seq in seqs if seq in self._recent}
        missing = [seq for seq in seqs if seq not in held]
        bodies: dict[int, tuple[bytes, int]] = {}
        if missing:
            rows = await self.db.fetch(
                "SELECT seq, body, event_count FROM txn WHERE seq = ANY($1)", missing
            )
            bodies = {int(r["seq"]): (bytes(r["body"]), int(r["event_count"])) for r in rows}
        out = []
        pause = _Pause()
        for seq in seqs:
            events = held.get(seq)
            if events is None:
                row = bodies.get(seq)
                # Gone since the first read: a body refused at intake (``begin_store``).
                events = [] if row is None else _events_or_none(seq, *row)
                await pause.maybe()
            out.append(StoredTxn(seq, events))
        return out

    async def mark_done(self, seqs: list[int]) -> None:
        """Mark fully handled transactions done, in one commit."""
        if not seqs:
            return
        rows = [(seq,) for seq in seqs]
        if self._writer is not None:
            # A done mark lost to a power cut means the transaction is handled again,
            # which handlers allow for (bridge.db.replay): no fsync of its own.
            await self._writer.executemany(_MARK_DONE.format("$1"), rows, synced=False)
            return
        async with write_transaction(self.db, synced=False) as conn:
            await conn.executemany(_MARK_DONE.format("$1"), rows)

    async def dead_letter(
        self, txn_seq: int, event: dict[str, Any], attempts: int, error: str
    ) -> None:
        """Keep an event that failed every attempt (visible in status and metrics).

        Its identifiers and the error text go through ``storable_text``, so what the event
        holds cannot make this fail; an unreachable database raises ``TransientError``.
        The event itself stays in its transaction's row (``txn_seq``) until pruned.
        """
        try:
            await self.db.execute(
                "INSERT INTO dead_letter (event_id, txn_seq, room_id, event_type, attempts, "
                "last_error, failed_at) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                "ON CONFLICT (event_id) DO UPDATE SET attempts = excluded.attempts, "
                "last_error = excluded.last_error, failed_at = excluded.failed_at",
                storable_text(event.get("event_id")),
                txn_seq,
                storable_text(event.get("room_id")),
                storable_text(event.get("type")),
                attempts,
                storable_text(error, ERROR_CHARS),
                _now_ms(),
            )
        except Exception as e:
            if is_transient_db_error(e):
                raise TransientError(f"database unavailable: {type(e).__name__}") from e
            raise

    async def depth(self) -> int:
        """Events stored but not yet handled (counted by pending transactions). A row
        still ``UNCOUNTED`` is counted from memory, or else from its body (stored by
        another replica a moment ago, or before a crash)."""
        value = await self.db.fetchval(
            "SELECT COALESCE(SUM(event_count), 0) FROM txn "
            "WHERE status = 'pending' AND event_count >= 0"
        )
        total = int(value or 0)
        rows = await self.db.fetch(
            "SELECT seq FROM txn WHERE status = 'pending' AND event_count < 0"
        )
        for (seq,) in rows:
            count = self.counts.get(int(seq))
            if count is None:
                body = await self.db.fetchval("SELECT body FROM txn WHERE seq = $1", seq)
                count = len(checked_events(bytes(body or b"")) or ())
            total += count
        return total

    async def failed_count(self) -> int:
        return int(await self.db.fetchval("SELECT COUNT(*) FROM dead_letter") or 0)

    async def prune_done(self, older_than_ms: int) -> int:
        """Delete handled transactions received more than ``older_than_ms`` ago (they
        hold messages). Counted from reception: a mark that changes nothing but the
        status keeps the done mark cheap (see ``_MARK_DONE``), and a transaction is
        handled after it is received, so none is kept longer than this after handling.
        The intake journal is voided first: no record may outlive its row."""
        if self._journaled is not None:
            await self._journaled.make_room()
        status = await self.db.execute(
            "DELETE FROM txn WHERE status <> 'pending' AND received_at < $1",
            _now_ms() - older_than_ms,
        )
        if self.db.scheme == Scheme.SQLITE:
            return int(status.rowcount)  # type: ignore[union-attr]
        return int(str(status).rsplit(" ", 1)[-1])
