"""An acknowledged transaction is on disk: what the homeserver got a 200 for, another
connection already reads, on SQLite (``synchronous=FULL``, the default) and PostgreSQL.

The homeserver never resends a transaction it got a 200 for, so the 200 must come after
a commit that survives a crash of SantéGuard, of the OS and a power loss: on SQLite, an
fsync of the WAL after the commit frame is written, what ``PRAGMA synchronous = FULL``
does (the writer makes it itself, and the test watches it), or, for the intake, the body
in the intake journal, written with ``O_DSYNC`` before the 200 (``bridge.spine.journaled``;
the test reads the file back as a replay would); on PostgreSQL, ``synchronous_commit = on``.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import aiohttp
import asyncpg
import pytest
from yarl import URL

from bridge.app import SanteGuard
from bridge.config import DatabaseConfig
from bridge.db.intake_journal import read_journal
from tests.helpers import HS_TOKEN, make_config, message_event

FULL, NORMAL = 2, 1  # PRAGMA synchronous values


async def _put(base: str, txn_id: str, events: list[dict[str, Any]]) -> int:
    async with (
        aiohttp.ClientSession() as s,
        s.put(
            f"{base}/_matrix/app/v1/transactions/{txn_id}",
            data=json.dumps({"events": events}).encode(),
            headers={"Authorization": f"Bearer {HS_TOKEN}"},
        ) as resp,
    ):
        return resp.status


async def _stored_event_ids(db_uri: str, txn_id: str) -> list[str]:
    """The transaction's event IDs as a new, independent connection reads them."""
    if db_uri.startswith("sqlite"):
        conn = sqlite3.connect(URL(db_uri).path)
        try:
            row = conn.execute("SELECT body FROM txn WHERE txn_id = ?", (txn_id,)).fetchone()
        finally:
            conn.close()
    else:
        pg = await asyncpg.connect(db_uri)  # its search_path names the test's schema
        try:
            row = await pg.fetchrow("SELECT body FROM txn WHERE txn_id = $1", txn_id)
        finally:
            await pg.close()
    if row is None:
        return []
    return [ev["event_id"] for ev in json.loads(bytes(row[0]))["events"]]


def test_full_is_the_default_and_normal_is_accepted() -> None:
    assert DatabaseConfig().sqlite_synchronous == "full"
    assert DatabaseConfig(sqlite_synchronous="normal").sqlite_synchronous == "normal"


async def test_every_acked_transaction_is_read_by_a_new_connection(db_uri: str) -> None:
    app = SanteGuard(make_config(db_uri))
    assert app.config.database.sqlite_synchronous == "full"
    await app.start()
    try:
        on_disk: set[str] | None = None
        if app.queue.writer is not None:
            writer = app.queue.writer
            assert writer._synchronous == "FULL"  # the writer fsyncs the WAL itself
            assert await app.db.fetchval("PRAGMA synchronous") == FULL  # checkpoints
            on_disk = _watch_fsyncs(writer, db_uri)
        base = app.config.appservice.address
        for t in range(6):
            events = [message_event(f"!r{t % 2}:x", t * 10 + i) for i in range(1 + t % 3)]
            assert await _put(base, f"durable-{t}", events) == 200
            # Right after this 200, before anything else: another connection sees it.
            assert await _stored_event_ids(db_uri, f"durable-{t}") == [
                ev["event_id"] for ev in events
            ]
            if on_disk is not None:  # and it is on disk: WAL fsync'd, or journaled
                journal = app.queue.journaled
                assert journal is not None  # the default intake on SQLite
                journaled = {r.txn_id for r in read_journal(journal.journal.path)}
                assert f"durable-{t}" in on_disk | journaled
    finally:
        await app.stop()


def _watch_fsyncs(writer: Any, db_uri: str) -> set[str]:
    """The txn IDs that an fsync of the SQLite writer covered: those visible to another
    connection when the WAL's fsync began (every fsync the writer makes goes through
    ``_fsync_wal``)."""
    covered: set[str] = set()

    def visible() -> set[str]:
        conn = sqlite3.connect(URL(db_uri).path)
        try:
            return {r[0] for r in conn.execute("SELECT txn_id FROM txn")}
        finally:
            conn.close()

    fsync_wal = writer._fsync_wal

    def watched_fsync() -> None:
        seen = visible()
        fsync_wal()
        covered.update(seen)

    writer._fsync_wal = watched_fsync
    return covered


@pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)
async def test_normal_is_applied_when_chosen(db_uri: str) -> None:
    app = SanteGuard(make_config(db_uri, database={"sqlite_synchronous": "normal"}))
    await app.start()
    try:
        assert app.queue.writer is not None
        writer = app.queue.writer
        assert await writer.run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == NORMAL
        assert await app.db.fetchval("PRAGMA synchronous") == NORMAL
        assert await _put(app.config.appservice.address, "n1", [message_event("!r:x", 1)]) == 200
        assert writer.wal_syncs == 0  # no fsync before the 200: what the option risks
        assert app.queue.journaled is None  # nor a journal
        assert await _stored_event_ids(db_uri, "n1") == [message_event("!r:x", 1)["event_id"]]
    finally:
        await app.stop()
