"""PostgreSQL: giving a connection back to the pool costs no round trip.

asyncpg's default reset sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
RESET ALL`` on every release, and the caller's query only returns after it: on the
intake, between the commit and the homeserver's ack. SantéGuard's pool keeps asyncpg's
own safety (a transaction left open is rolled back) and nothing else, as no pooled
connection keeps session state (``bridge.db.database.keep_session``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from mautrix.util.async_db import Database

from bridge.db.database import open_database, start_database

pytestmark = pytest.mark.parametrize("db_uri", ["postgres"], indirect=True)


@pytest.fixture
async def pooled(db_uri: str) -> AsyncIterator[Database]:
    """The database as SantéGuard opens it, with a single pooled connection."""
    db = open_database(db_uri, min_size=1, max_size=1)
    await start_database(db, db_uri)
    try:
        yield db
    finally:
        await db.stop()


async def _last_query(db_uri: str, pid: int) -> str:
    admin = await asyncpg.connect(db_uri)
    try:
        return str(await admin.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid))
    finally:
        await admin.close()


async def test_release_sends_nothing_after_the_query(pooled: Database, db_uri: str) -> None:
    pid = int(await pooled.fetchval("SELECT pg_backend_pid()"))
    # Released by now. With asyncpg's default reset the backend's last statement would
    # be "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;".
    assert await _last_query(db_uri, pid) == "SELECT pg_backend_pid()"
    assert int(await pooled.fetchval("SELECT pg_backend_pid()")) == pid  # the same one


async def test_a_transaction_left_open_is_still_rolled_back(pooled: Database) -> None:
    await pooled.execute("CREATE TABLE pool_probe (n integer)")
    async with pooled.acquire() as conn:
        await conn.execute("BEGIN")
        await conn.execute("INSERT INTO pool_probe VALUES (1)")
    # The pool's one connection: still in that transaction, it would see its own row.
    assert await pooled.fetchval("SELECT count(*) FROM pool_probe") == 0
