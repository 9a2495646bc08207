"""Fixtures of the cluster tests: PostgreSQL only (SQLite is one process)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest
from mautrix.util.async_db import Database

from bridge.db import build_upgrade_table


@pytest.fixture
async def pg_uri(pg_database: str | None) -> AsyncIterator[str]:
    """A PostgreSQL schema of this test's own, upgraded: what two replicas share."""
    if pg_database is None:
        pytest.skip("PostgreSQL not available (set SANTEGUARD_REQUIRE_POSTGRES=1 to fail)")
    schema = f"c_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(pg_database)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.close()
    uri = f"{pg_database}?search_path={schema}"
    db = Database.create(uri, upgrade_table=build_upgrade_table())
    await db.start()
    await db.stop()
    yield uri


async def open_db(uri: str) -> Database:
    db = Database.create(uri, upgrade_table=build_upgrade_table())
    await db.start()
    return db
