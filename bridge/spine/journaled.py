"""SQLite intake with ``synchronous: full``: journal first, then the row (see
``bridge.db.intake_journal`` for why and for the file's format).

The guarantee is the one a ``FULL`` commit gives: when ``store`` returns, the
transaction survives a power loss, in the WAL or, until the WAL's next fsync, in the
journal. The row itself is committed without fsync (the writer syncs the WAL within
``SYNC_LATER_S``). The journal starts a new epoch only after an fsync of the WAL that
began after every journaled row was committed; a row committed after a rotation that
voided its record waits for a WAL fsync of its own before the caller acks.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from collections.abc import Callable
from typing import Any

from bridge.db.intake_journal import IntakeJournal, JournalRecord, Slot
from bridge.db.sqlite_writer import SQLiteWriter
from bridge.spine.pending import checked_events

log = logging.getLogger("santeguard.intake")

_INSERT = (
    "INSERT INTO txn (txn_id, body, event_count, received_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (txn_id) DO NOTHING RETURNING seq"
)


class JournaledPending:
    """A body journaled as soon as it was read (``JournaledIntake.begin``), while the
    intake parses and validates it; ``bridge.spine.http.PendingTxn``."""

    def __init__(
        self, owner: JournaledIntake, txn_id: str, body: bytes, received_at: int, slot: Slot
    ) -> None:
        self._owner = owner
        self._txn_id = txn_id
        self._body = body
        self._received_at = received_at
        self._slot = slot

    async def stored(self, event_count: int) -> int | None:
        """Commit the row (no fsync), then wait for the journal's record to be on the
        device: the transaction survives a power loss when this returns. The row's
        sequence number, None if it was already stored."""
        owner, slot = self._owner, self._slot
        rows = await owner._writer.run(
            lambda c: _insert(c, self._txn_id, self._body, event_count, self._received_at),
            synced=False,
        )
        journal = owner.journal
        try:
            journal.flush()
        except OSError:
            log.exception("The intake journal could not be synced; syncing the WAL instead")
            await owner._writer.wal_on_disk()  # raises if that fails too: 503, retried
            return int(rows[0][0]) if rows else None
        if journal.epoch != slot.epoch:
            # Voided while the row waited for the writer: the WAL must hold it first.
            await owner._writer.wal_on_disk()
        return int(rows[0][0]) if rows else None

    async def refused(self) -> None:
        """The body was refused: its record is voided (no row was written)."""
        self._owner.journal.abandon(self._slot)


def journal_path(db_path: str) -> str:
    # Not "-journal": that is SQLite's own rollback journal's name.
    return db_path + "-sg-intake"


class JournaledIntake:
    def __init__(self, writer: SQLiteWriter, journal: IntakeJournal) -> None:
        self._writer = writer
        self._journal = journal
        self.replayed = 0  # rows put back at the last open

    @property
    def journal(self) -> IntakeJournal:
        return self._journal

    async def open(self) -> int:
        """Open the journal and put back what a power loss took from the WAL; return how
        many rows came back. Before the first transaction is accepted."""
        token = await self._writer.run(_pairing_token, synced=True)
        records = self._journal.open(token)
        restored = 0
        for record in records:
            events = checked_events(record.body)
            if events is None:  # journaled before its body was refused (never acked)
                log.info("Journaled transaction %r was refused at intake; skipped", record.txn_id)
                continue
            rows = await self._writer.run(_replay_insert(record, len(events)), synced=False)
            restored += bool(rows)
        await self._writer.wal_on_disk()  # every record's row is on disk now
        # A new pairing at each start: a database restored from a backup made before
        # this start does not take this run's records (on disk before the header says so).
        token = await self._writer.run(_new_pairing_token, synced=True)
        self._journal.rotate(token)
        if restored:
            log.warning(
                "%d acknowledged transaction(s) lost from SQLite's WAL (power loss or OS "
                "crash) were restored from the intake journal",
                restored,
            )
        self.replayed = restored
        return restored

    async def store(
        self, txn_id: str, body: bytes, event_count: int, received_at: int
    ) -> list[Any]:
        """Journal then commit; the inserted row's ``(seq,)``, none if already stored."""
        journal = self._journal
        if not journal.can_hold(txn_id, body):
            # Larger than the journal: the row is fsync'd with the WAL instead.
            return await self._writer.run(
                lambda c: _insert(c, txn_id, body, event_count, received_at), synced=True
            )
        if not journal.fits(txn_id, body):
            await self.make_room()
        epoch = journal.append(txn_id, body, received_at)
        rows = await self._writer.run(
            lambda c: _insert(c, txn_id, body, event_count, received_at), synced=False
        )
        if journal.epoch != epoch:
            # Voided while the row waited for the writer: the WAL must hold it first.
            await self._writer.wal_on_disk()
        return rows

    async def begin(self, txn_id: str, body: bytes, received_at: int) -> JournaledPending | None:
        """Journal the body before it is parsed (its write-out starts now); None if it
        is too large for the journal (``store`` then syncs it with the WAL)."""
        journal = self._journal
        if not journal.can_hold(txn_id, body):
            return None
        if not journal.fits(txn_id, body):
            await self.make_room()
        slot = journal.start(txn_id, body, received_at)
        return JournaledPending(self, txn_id, body, received_at, slot)

    async def make_room(self) -> None:
        """Fsync the WAL (every row journaled so far and committed is then on disk),
        then void the journal. Also before handled rows are pruned: a record must never
        outlive its row, or a replay would bring a handled transaction back."""
        await self._writer.wal_on_disk()
        self._journal.rotate()

    def close(self) -> None:
        self._journal.close()


def _pairing_token(conn: sqlite3.Connection) -> bytes:
    """The database's journal token (``v10_intake_journal``), made on first use."""
    row = conn.execute("SELECT token FROM intake_journal WHERE id = 1").fetchone()
    if row is not None:
        return bytes.fromhex(row[0])
    token = secrets.token_bytes(16)
    conn.execute("INSERT INTO intake_journal (id, token) VALUES (1, ?)", (token.hex(),))
    return token


def _new_pairing_token(conn: sqlite3.Connection) -> bytes:
    token = secrets.token_bytes(16)
    conn.execute("UPDATE intake_journal SET token = ? WHERE id = 1", (token.hex(),))
    return token


def _replay_insert(record: JournalRecord, count: int) -> Callable[[sqlite3.Connection], list[Any]]:
    return lambda c: _insert(c, record.txn_id, record.body, count, record.received_at)


def _insert(
    conn: sqlite3.Connection, txn_id: str, body: bytes, count: int, received_at: int
) -> list[Any]:
    return conn.execute(_INSERT, (txn_id, body, count, received_at)).fetchall()
