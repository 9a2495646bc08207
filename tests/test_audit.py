"""The tamper-evident audit log: group commits keep one valid chain; tampering shows."""

from __future__ import annotations

import asyncio

import pytest
from mautrix.util.async_db import Database, Scheme

from bridge.audit.log import AuditLog
from bridge.db.sqlite_writer import SQLiteWriter


async def test_concurrent_records_form_one_valid_chain(db: Database) -> None:
    log = AuditLog(db)
    hashes = await asyncio.gather(
        *(
            log.record(
                "gate", "gate.allowed", room_id=f"!r{i % 3}:x", subject=f"@u{i}:x", details={"n": i}
            )
            for i in range(200)
        )
    )
    assert len(set(hashes)) == 200
    check = await log.verify()
    assert (check.ok, check.entries) == (True, 200)
    # A fresh instance (after a restart) continues the same chain.
    again = AuditLog(db)
    await again.record("admin", "identity.bound", subject="@x:x")
    assert (await again.verify()).ok


@pytest.mark.parametrize("tamper", ["edit", "delete", "reorder"])
async def test_tampering_is_detected(db: Database, tamper: str) -> None:
    log = AuditLog(db)
    for i in range(10):
        await log.record("gate", "gate.refused", subject=f"@u{i}:x", details={"reason": "x"})
    if tamper == "edit":
        await db.execute("UPDATE audit_log SET details = $1 WHERE seq = 5", '{"reason": "ok"}')
    elif tamper == "delete":
        await db.execute("DELETE FROM audit_log WHERE seq = 5")
    else:
        await db.execute("UPDATE audit_log SET ts = ts + 1 WHERE seq = 5")
    check = await log.verify()
    assert not check.ok
    assert check.first_bad_seq in (5, 6)


async def test_failed_commit_fails_the_callers_and_recovers(db: Database) -> None:
    log = AuditLog(db)
    await log.record("gate", "first")
    await db.execute("ALTER TABLE audit_log RENAME TO audit_log_away")
    with pytest.raises(Exception):  # noqa: B017 (the database's own error type)
        await log.record("gate", "lost")
    await db.execute("ALTER TABLE audit_log_away RENAME TO audit_log")
    await log.record("gate", "after")
    check = await log.verify()
    assert (check.ok, check.entries) == (True, 2)


async def test_refusals_committed_without_their_own_fsync_keep_one_chain(db: Database) -> None:
    """``synced=False`` (the gate's refusals): committed when ``record`` returns, in the
    same chain as synced entries; on SQLite through the intake's writer, whose WAL is
    fsync'd soon after; on PostgreSQL with ``synchronous_commit = off`` for that commit."""
    log = AuditLog(db)
    writer = None
    if db.scheme == Scheme.SQLITE:
        writer = SQLiteWriter(db.url.path, "FULL")
        log.use_writer(writer)
    try:
        first = await log.record("gate", "gate.refused.user_may_join_room", synced=False)
        assert await db.fetchval("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1") == first
        mixed = await asyncio.gather(
            *(log.record("gate", f"e{i}", synced=bool(i % 2)) for i in range(20))
        )
        assert len(set(mixed)) == 20
        check = await log.verify()
        assert (check.ok, check.entries) == (True, 21)
        if writer is not None:
            await asyncio.sleep(0.2)
            assert writer.wal_syncs >= 1 or not writer._unsynced
    finally:
        if writer is not None:
            await writer.close()
