"""Two replicas append to one audit chain (PostgreSQL): it verifies end to end."""

from __future__ import annotations

import asyncio

from bridge.audit.log import AuditLog
from tests.cluster.conftest import open_db


async def test_two_replicas_append_to_one_chain(pg_uri: str) -> None:
    dbs = [await open_db(pg_uri), await open_db(pg_uri)]
    try:
        logs = [AuditLog(db) for db in dbs]

        async def append(log: AuditLog, name: str) -> list[str]:
            return await asyncio.gather(
                *(log.record(name, "test.append", subject=f"{name}-{i}") for i in range(300))
            )

        a, b = await asyncio.gather(append(logs[0], "a"), append(logs[1], "b"))
        assert len(set(a) | set(b)) == 600  # every append got its own hash
        check = await logs[0].verify()
        assert check.ok, check
        assert await dbs[0].fetchval("SELECT COUNT(*) FROM audit_log") == 600
        # Each returned hash is the one stored for that entry.
        stored = {
            r["subject"]: r["hash"]
            for r in await dbs[1].fetch("SELECT subject, hash FROM audit_log")
        }
        assert stored["a-0"] == a[0] and stored["b-299"] == b[299]
    finally:
        for db in dbs:
            await db.stop()
