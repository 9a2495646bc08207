"""Shared fixtures: every database-backed test runs on SQLite and on PostgreSQL.

PostgreSQL: a throwaway database is created per test run on the local server
(``SANTEGUARD_TEST_PG`` or ``postgres://postgres@127.0.0.1:5432/test``) and each test
gets its own schema in it. Without a server, PostgreSQL cases are skipped, unless
``SANTEGUARD_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which makes them fail instead.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from mautrix.util.async_db import Database

from bridge.db import build_upgrade_table
from bridge.devtools.stack import DevStack

# Every run fails if a message text the tests sent appears in a log (tests/logscan.py)
pytest_plugins = ("tests.logscan", "tests.secretscan")  # + secrets (tests/secretscan.py)

PG_ADMIN_DSN = os.environ.get("SANTEGUARD_TEST_PG", "postgres://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("SANTEGUARD_REQUIRE_POSTGRES") == "1"


def _with_db(dsn: str, dbname: str) -> str:
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
async def pg_database() -> AsyncIterator[str | None]:
    """DSN of a fresh PostgreSQL database for this test run, or None if unavailable."""
    try:
        admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as e:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL required but unreachable at {PG_ADMIN_DSN}: {e}")
        yield None
        return
    name = f"sg_test_{os.getpid()}_{secrets.token_hex(3)}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_db(PG_ADMIN_DSN, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def db_uri(
    request: pytest.FixtureRequest, tmp_path: Path, pg_database: str | None
) -> AsyncIterator[str]:
    """A database URI private to this test: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'santeguard.db'}"
        return
    if pg_database is None:
        pytest.skip("PostgreSQL not available (set SANTEGUARD_REQUIRE_POSTGRES=1 to fail)")
    schema = f"t_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(pg_database)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.close()
    yield f"{pg_database}?search_path={schema}"


@pytest.fixture
async def db(db_uri: str) -> AsyncIterator[Database]:
    """A started, fully upgraded database."""
    database = Database.create(db_uri, upgrade_table=build_upgrade_table())
    await database.start()
    try:
        yield database
    finally:
        await database.stop()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    yield Path(__file__).parent / "data"


# -- real homeserver ------------------------------------------------------------------


async def _started_stack(
    kind: str,
    name: str,
    tmp_path_factory: pytest.TempPathFactory,
    pg_database: str | None,
    *,
    fault_proxy: bool = False,
    **overrides: dict[str, object],
) -> DevStack:
    """A DevStack on SQLite or on its own PostgreSQL schema, started."""
    workdir = tmp_path_factory.mktemp(f"{name}-{kind}")
    if kind == "sqlite":
        db_uri = f"sqlite:///{workdir / 'santeguard.db'}"
    else:
        if pg_database is None:
            pytest.skip("PostgreSQL not available (set SANTEGUARD_REQUIRE_POSTGRES=1 to fail)")
        schema = f"{name}_{secrets.token_hex(4)}"
        conn = await asyncpg.connect(pg_database)
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.close()
        db_uri = f"{pg_database}?search_path={schema}"
    dev = DevStack(
        workdir,
        db_uri=db_uri,
        admins=["@admin:santeguard.test"],
        config_overrides=overrides,
        fault_proxy=fault_proxy,
    )
    await dev.start()
    return dev


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
async def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_database: str | None,
) -> AsyncIterator[DevStack]:
    """A real Synapse with SantéGuard registered, once per database, on an open network
    (no protected rooms) for bot features; `gated_stack` enforces. Tests isolate
    themselves by creating their own rooms and users."""
    dev = await _started_stack(
        request.param,
        "stack",
        tmp_path_factory,
        pg_database,
        gate={"protect_by_default": False},
    )
    try:
        yield dev
    finally:
        await dev.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
async def gated_stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_database: str | None,
) -> AsyncIterator[DevStack]:
    """A protected network: every room protected and encrypted, members verified."""
    dev = await _started_stack(request.param, "gated", tmp_path_factory, pg_database)
    try:
        yield dev
    finally:
        await dev.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
async def faulty_stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_database: str | None,
) -> AsyncIterator[DevStack]:
    """`gated_stack` with SantéGuard reaching Synapse through a fault proxy
    (`faulty_stack.proxy`, bridge/devtools/faultproxy.py): tests make the homeserver
    fail SantéGuard's requests, and clear their rules when done."""
    dev = await _started_stack(
        request.param, "faulty", tmp_path_factory, pg_database, fault_proxy=True
    )
    try:
        yield dev
    finally:
        await dev.stop()
