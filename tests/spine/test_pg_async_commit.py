"""PostgreSQL: writes a replay makes again do not wait for the WAL flush.

Handlers' ledger rows and memberships, and done marks, commit with
``synchronous_commit = off`` (``bridge.db.txn.write_transaction``): PostgreSQL recovers
a prefix of its WAL, so a power cut that takes such a commit back takes the later done
mark too and the event is handled again (``bridge.db.replay``). Everything else, the
intake's commit first, still waits for the flush. Counted with ``pg_stat_wal``: one WAL
fsync per synced commit, almost none for the others (the WAL writer flushes them
together every 200 ms).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import asyncpg
import pytest
from mautrix.util.async_db import Database

from bridge.db import build_upgrade_table
from bridge.db.replay import replayable
from bridge.db.txn import write_transaction
from bridge.gate.store import RoomPolicyStore
from bridge.retention.ledger import EventLedger
from bridge.spine.queue import EventQueueStore
from tests.helpers import message_event

pytestmark = pytest.mark.parametrize("db_uri", ["postgres"], indirect=True)

N = 40


async def _setting(db: Database, synced: bool | None) -> str:
    async with write_transaction(db, synced=synced) as conn:
        return str(await conn.fetchval("SHOW synchronous_commit"))


async def test_only_writes_a_replay_makes_again_skip_the_flush(db: Database) -> None:
    assert await _setting(db, True) == "on"
    assert await _setting(db, False) == "off"
    assert await _setting(db, None) == "on"  # outside a handler: synced
    with replayable():
        assert await _setting(db, None) == "off"
        assert await _setting(db, True) == "on"  # a caller that says so is synced
    # SET LOCAL: the pool's connections keep the server's default afterwards.
    assert str(await db.fetchval("SHOW synchronous_commit")) == "on"


@pytest.fixture
async def one_conn(db_uri: str) -> AsyncIterator[Database]:
    """The schema's database through a single connection: one backend's counters."""
    database = Database.create(
        db_uri, upgrade_table=build_upgrade_table(), db_args={"min_size": 1, "max_size": 1}
    )
    await database.start()
    try:
        yield database
    finally:
        await database.stop()


async def _wal_syncs(db: Database) -> int:
    # A backend publishes its WAL counters when it goes idle, at most once a second
    # unless told to: this makes the single connection publish them, then reads them.
    await db.execute("SELECT pg_stat_force_next_flush()")
    return int(await db.fetchval("SELECT wal_sync FROM pg_stat_wal"))


async def test_replayed_writes_do_not_fsync_one_by_one(one_conn: Database, db_uri: str) -> None:
    db = one_conn
    ledger = EventLedger(db)
    members = RoomPolicyStore(db)
    queue = EventQueueStore(db)
    await queue.open()

    def row(i: int, tag: str) -> tuple[str, str, str, bool, bool, int, int]:
        return (f"$e{tag}{i}", "!r:x", "m.room.encrypted", False, False, 1_000 + i, 2_000)

    # Synced (outside a handler): one WAL fsync per commit at least.
    before = await _wal_syncs(db)
    for i in range(N):
        await ledger.record([row(i, "s")])
    synced = await _wal_syncs(db) - before
    assert synced >= N, synced

    body = json.dumps({"events": [message_event("!r:x", 1)]}).encode()
    seqs = []
    for i in range(N):
        seq = await queue.store_transaction(f"t{i}", body, 1)
        assert seq is not None
        seqs.append(seq)

    # As the dispatcher makes them: ledger rows and memberships inside ``replayable``,
    # done marks after; none of them waits for its own flush.
    before = await _wal_syncs(db)
    with replayable():
        for i in range(N):
            await ledger.record([row(i, "r")])
            await members.set_memberships([("!r:x", f"@u{i}:x", "join")])
    for seq in seqs:
        await queue.mark_done([seq])
    later = await _wal_syncs(db) - before
    assert later < N // 2, later  # 3 x N commits; the WAL writer's own flushes only

    # All of it committed, visible to another connection at once.
    conn = await asyncpg.connect(db_uri)  # its search_path names the test's schema
    try:
        assert await conn.fetchval("SELECT COUNT(*) FROM event_ledger") == 2 * N
        assert await conn.fetchval("SELECT COUNT(*) FROM room_member") == N
        assert await conn.fetchval("SELECT COUNT(*) FROM txn WHERE status = 'handled'") == N
    finally:
        await conn.close()
        await queue.close()
