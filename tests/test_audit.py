"""The tamper-evident audit log: group commits keep one valid chain; tampering shows."""

from __future__ import annotations

import asyncio

import pytest
from mautrix.util.async_db import Database

from bridge.audit.log import AuditLog


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
