"""The SQLite intake journal: what a power loss takes from the WAL comes back, once.

A power loss is modelled as it acts on the files: the database and its WAL as they were
at the WAL's last fsync (copied then, written back in place afterwards, so the database
file keeps its inode), and the journal as it is (every write to it is ``O_DSYNC``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mautrix.util.async_db import Database

from bridge.app import SanteGuard
from bridge.db import build_upgrade_table
from bridge.db.intake_journal import (
    HEADER_SIZE,
    IntakeJournal,
    JournalError,
    read_journal,
)
from bridge.spine.journaled import JournaledPending, journal_path
from bridge.spine.queue import EventQueueStore
from tests.helpers import HS_TOKEN, make_config, message_event


def _body(t: int, pad: int = 0) -> bytes:
    events = [message_event(f"!r{t % 3}:x", t * 10)]
    events[0]["content"]["padding"] = "x" * pad
    return json.dumps({"events": events}).encode()


# -- the file ---------------------------------------------------------------------------


TOKEN = b"t" * 16


def _journal(tmp_path: Path, size: int = 1 << 16) -> IntakeJournal:
    return IntakeJournal(str(tmp_path / "x.db-sg-intake"), size)


def test_records_come_back_in_order_until_rotated(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    assert j.open(TOKEN) == []
    for t in range(5):
        assert j.fits(f"t{t}", _body(t))
        j.append(f"t{t}", _body(t), 1000 + t)
    j.close()
    again = _journal(tmp_path)
    got = again.open(TOKEN)
    assert [(r.txn_id, r.received_at, r.body) for r in got] == [
        (f"t{t}", 1000 + t, _body(t)) for t in range(5)
    ]
    again.rotate()
    assert read_journal(again.path) == []
    again.close()


@pytest.mark.parametrize("where", ["body", "header", "id"])
def test_a_torn_record_ends_the_journal(tmp_path: Path, where: str) -> None:
    j = _journal(tmp_path)
    j.open(TOKEN)
    for t in range(3):
        j.append(f"t{t}", _body(t), t)
    last = j._pos  # the end of the third record
    j.close()
    size = len(_body(2)) + len("t2")
    offset = {"body": last - 5, "header": last - size - 20, "id": last - size}[where]
    with open(j.path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert [r.txn_id for r in read_journal(j.path)] == ["t0", "t1"]


def test_a_journal_of_another_database_is_voided(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    j.open(TOKEN)
    j.append("t0", _body(0), 0)
    j.close()
    again = _journal(tmp_path)
    assert again.open(b"u" * 16) == []  # a fresh database beside an old journal
    assert read_journal(again.path) == []
    again.close()


def test_room_and_size_limits(tmp_path: Path) -> None:
    j = _journal(tmp_path, size=HEADER_SIZE + 4096)
    j.open(TOKEN)
    assert not j.can_hold("big", b"x" * 4096)  # larger than the journal: synced instead
    assert j.can_hold("t", b"x" * 1000)
    j.append("t", b"x" * 2000, 0)
    assert not j.fits("t2", b"x" * 2500)
    j.rotate()
    assert j.fits("t2", b"x" * 2500)
    j.close()


def test_one_process_per_journal(tmp_path: Path) -> None:
    a, b = _journal(tmp_path), _journal(tmp_path)
    a.open(TOKEN)
    try:
        with pytest.raises(JournalError, match="held by another process"):
            b.open(TOKEN)
    finally:
        a.close()
    b.open(TOKEN)
    b.close()


# -- the intake on SQLite ---------------------------------------------------------------


class PowerLoss:
    """The database's files as of the WAL's last fsync: ``watch`` copies them after each
    fsync the writer makes (no write runs meanwhile), and keeps the writer's timed fsync
    (``SYNC_LATER_S``) off, the power being lost before it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.saved: dict[str, bytes | None] = {}
        self.struck = False  # the power is gone: what follows never reaches the disk

    def watch(self, writer: Any) -> None:
        fsync_wal = writer._fsync_wal

        def fsync_then_copy() -> None:
            fsync_wal()
            if not self.struck:
                self.at_fsync()

        writer._fsync_wal = fsync_then_copy
        writer._sync_soon = lambda: None
        self.at_fsync()  # the open's synced writes are on disk

    def at_fsync(self) -> None:
        for suffix in ("", "-wal"):
            p = Path(self.path + suffix)
            self.saved[suffix] = p.read_bytes() if p.exists() else None

    def strike(self) -> None:
        for suffix, data in self.saved.items():
            p = Path(self.path + suffix)
            if data is None:
                p.unlink(missing_ok=True)
            else:
                with open(p, "r+b" if p.exists() else "wb") as f:  # in place: same inode
                    f.write(data)
                    f.truncate()
        Path(self.path + "-shm").unlink(missing_ok=True)


def _txn_ids(path: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT txn_id FROM txn ORDER BY seq")]
    finally:
        conn.close()


async def _open(path: str, size: int) -> tuple[Database, EventQueueStore]:
    db = Database.create(f"sqlite:///{path}", upgrade_table=build_upgrade_table())
    await db.start()
    queue = EventQueueStore(db)
    await queue.open(journal=True, journal_size=size)
    return db, queue


async def _close(db: Database, queue: EventQueueStore) -> None:
    await queue.close()
    await db.stop()


@pytest.mark.parametrize("size", [8 << 20, 64 << 10], ids=["default", "rotating"])
async def test_acked_transactions_lost_by_the_wal_come_back_once(tmp_path: Path, size: int) -> None:
    path = str(tmp_path / "santeguard.db")
    db, queue = await _open(path, size)
    loss = PowerLoss(path)
    assert queue.writer is not None
    loss.watch(queue.writer)
    bodies = {f"t{t}": _body(t, 15_000) for t in range(12)}
    try:
        for t in range(3):
            assert await queue.store_transaction(f"t{t}", bodies[f"t{t}"], 1) is not None
        await queue.writer.wal_on_disk()
        for t in range(3, 12):  # acked (store returned), never fsync'd with the WAL
            assert await queue.store_transaction(f"t{t}", bodies[f"t{t}"], 1) is not None
        assert queue.journaled is not None
        rotations = queue.journaled.journal.rotations
        loss.struck = True
    finally:
        await _close(db, queue)
    if size < 1 << 20:
        assert rotations > 1  # rows fsync'd with the WAL before their records were voided
    loss.strike()
    lost = [t for t in bodies if t not in _txn_ids(path)]
    assert lost  # the model took something back (else this test proves nothing)

    db, queue = await _open(path, size)
    try:
        assert queue.journaled is not None and queue.journaled.replayed == len(lost)
        assert _txn_ids(path) == list(bodies)  # each once, in the order received
        for txn_id, body in bodies.items():
            stored = await db.fetchval("SELECT body FROM txn WHERE txn_id = $1", txn_id)
            assert bytes(stored) == body
        assert await queue.depth() == len(bodies)
        assert read_journal(journal_path(path)) == []  # rotated once replayed
    finally:
        await _close(db, queue)


async def test_a_restart_without_loss_replays_nothing(tmp_path: Path) -> None:
    """A SIGKILL or a clean stop keeps the WAL: every record's row is there."""
    path = str(tmp_path / "santeguard.db")
    db, queue = await _open(path, 8 << 20)
    try:
        for t in range(4):
            await queue.store_transaction(f"t{t}", _body(t), 1)
        assert len(read_journal(journal_path(path))) >= 1
    finally:
        await _close(db, queue)
    db, queue = await _open(path, 8 << 20)
    try:
        assert queue.journaled is not None and queue.journaled.replayed == 0
        assert _txn_ids(path) == [f"t{t}" for t in range(4)]
    finally:
        await _close(db, queue)


async def test_pruned_transactions_never_come_back(tmp_path: Path) -> None:
    """A record must not outlive its row: a handled, pruned transaction replayed would be
    handled twice."""
    path = str(tmp_path / "santeguard.db")
    db, queue = await _open(path, 8 << 20)
    try:
        seqs = [await queue.store_transaction(f"t{t}", _body(t), 1) for t in range(3)]
        await queue.mark_done([s for s in seqs if s is not None])
        assert await queue.prune_done(-60_000) == 3
    finally:
        await _close(db, queue)
    db, queue = await _open(path, 8 << 20)
    try:
        assert _txn_ids(path) == []
    finally:
        await _close(db, queue)


async def test_a_second_process_on_the_database_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "santeguard.db")
    db, queue = await _open(path, 8 << 20)
    other = Database.create(f"sqlite:///{path}", upgrade_table=build_upgrade_table())
    await other.start()
    second = EventQueueStore(other)
    try:
        with pytest.raises(JournalError, match="one SantéGuard process per SQLite database"):
            await second.open(journal=True)
        await second.open()  # a tool (no journal) may still open it
    finally:
        await _close(other, second)
        await _close(db, queue)


async def test_a_fresh_database_beside_an_old_journal_gets_nothing(tmp_path: Path) -> None:
    """An admin who deletes the database to start again, leaving the journal: nothing of
    the old installation is replayed into the new one."""
    path = str(tmp_path / "santeguard.db")
    db, queue = await _open(path, 8 << 20)
    loss = PowerLoss(path)
    assert queue.writer is not None
    loss.watch(queue.writer)
    try:
        for t in range(3):
            await queue.store_transaction(f"old{t}", _body(t), 1)
    finally:
        await _close(db, queue)
    assert len(read_journal(journal_path(path))) == 3
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)  # noqa: ASYNC240 (a test's files)
    db, queue = await _open(path, 8 << 20)
    try:
        assert queue.journaled is not None and queue.journaled.replayed == 0
        assert _txn_ids(path) == []
    finally:
        await _close(db, queue)


async def test_a_backup_from_before_the_last_start_gets_nothing(tmp_path: Path) -> None:
    """The pairing changes at each start: a database restored from an older backup does
    not take the journal's records (transactions it never had the rest of)."""
    path = str(tmp_path / "santeguard.db")
    db, queue = await _open(path, 8 << 20)
    await _close(db, queue)
    backup = {s: Path(path + s).read_bytes() for s in ("",)}  # noqa: ASYNC240
    db, queue = await _open(path, 8 << 20)  # a later start
    try:
        for t in range(3):
            await queue.store_transaction(f"after{t}", _body(t), 1)
    finally:
        await _close(db, queue)
    assert len(read_journal(journal_path(path))) == 3
    for suffix in ("-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)  # noqa: ASYNC240
    with open(path, "r+b") as f:  # noqa: ASYNC230 - restored in place
        f.write(backup[""])
        f.truncate()
    db, queue = await _open(path, 8 << 20)
    try:
        assert queue.journaled is not None and queue.journaled.replayed == 0
        assert _txn_ids(path) == []
    finally:
        await _close(db, queue)


async def _begin(queue: EventQueueStore, txn_id: str, body: bytes) -> JournaledPending:
    pending = await queue.begin_store(txn_id, body)
    assert isinstance(pending, JournaledPending)
    return pending


async def test_a_refused_body_is_voided_or_refused_again_at_replay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The intake journals a body before it parses it: one it then refuses leaves no
    record that a replay would take for an acked transaction."""
    path = str(tmp_path / "santeguard.db")
    db, queue = await _open(path, 8 << 20)
    loss = PowerLoss(path)
    assert queue.writer is not None
    loss.watch(queue.writer)
    try:
        # Voided: nothing was journaled after it (its space is reused).
        refused = await _begin(queue, "bad1", b'{"events": 3}')
        await refused.refused()
        assert read_journal(journal_path(path)) == []
        ok = await _begin(queue, "good1", _body(1))
        assert await ok.stored(1) is not None
        # Not voidable (a record follows it): left for the replay's check.
        refused = await _begin(queue, "bad2", b"{not json")
        ok = await _begin(queue, "good2", _body(2))
        await refused.refused()
        assert await ok.stored(1) is not None
        assert [r.txn_id for r in read_journal(journal_path(path))] == ["good1", "bad2", "good2"]
        loss.struck = True
    finally:
        await _close(db, queue)
    loss.strike()
    assert _txn_ids(path) == []
    with caplog.at_level(logging.INFO, logger="santeguard.intake"):
        db, queue = await _open(path, 8 << 20)
    try:
        assert _txn_ids(path) == ["good1", "good2"]
        assert any("'bad2' was refused at intake" in r.getMessage() for r in caplog.records)
    finally:
        await _close(db, queue)


# -- the journal failing under the intake -----------------------------------------------


async def _put(app: SanteGuard, txn_id: str, raw: bytes) -> int:
    url = f"{app.config.appservice.address}/_matrix/app/v1/transactions/{txn_id}"
    async with (
        aiohttp.ClientSession() as s,
        s.put(url, data=raw, headers={"Authorization": f"Bearer {HS_TOKEN}"}) as r,
    ):
        return r.status


@pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)
async def test_a_journal_write_that_fails_is_a_503_then_a_retry_stores_it(
    db_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = SanteGuard(make_config(db_uri))
    await app.start()
    try:
        journaled = app.queue.journaled
        assert journaled is not None
        real = journaled.journal.start
        failures = [OSError(5, "Input/output error")]

        def failing_start(*args: Any) -> Any:
            if failures:
                raise failures.pop()
            return real(*args)

        monkeypatch.setattr(journaled.journal, "start", failing_start)
        body = _body(1)
        assert await _put(app, "eio", body) == 503  # not acked: the homeserver retries
        assert await app.db.fetchval("SELECT COUNT(*) FROM txn WHERE txn_id = 'eio'") == 0
        assert await _put(app, "eio", body) == 200
        assert await app.db.fetchval("SELECT COUNT(*) FROM txn WHERE txn_id = 'eio'") == 1
    finally:
        await app.stop()


@pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)
async def test_a_journal_flush_that_fails_syncs_the_wal_instead(
    db_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row is committed when the flush fails: the WAL's fsync makes it durable before
    the 200, as without a journal."""
    app = SanteGuard(make_config(db_uri))
    await app.start()
    try:
        journaled = app.queue.journaled
        writer = app.queue.writer
        assert journaled is not None and writer is not None

        def failing_flush() -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(journaled.journal, "flush", failing_flush)
        synced = writer.wal_syncs
        assert await _put(app, "flush-eio", _body(2)) == 200
        assert writer.wal_syncs > synced
        assert not writer._unsynced
    finally:
        await app.stop()
