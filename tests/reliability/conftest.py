"""The reliability lab: one stack per database for this folder's tests (tests/reliability/lab.py).

``make test`` runs it on SQLite; ``SANTEGUARD_LONG_TESTS=1`` on SQLite and PostgreSQL
(a schema of its own in the run's database, as tests/conftest.py does), at full size.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bridge.db.database import open_database
from bridge.devtools.stack import DevStack
from bridge.identity.sources.extract import import_extract
from tests.test_enforcement_durable import DOCTOR, _write_config
from tests.test_integration_gate import protected_room
from tests.test_integration_identity import SAMPLE

from .lab import Lab

LONG = os.environ.get("SANTEGUARD_LONG_TESTS") == "1"
ROOMS = 100 if LONG else 20
KINDS = ["sqlite", "postgres"] if LONG else ["sqlite"]


@pytest.fixture(scope="session", params=KINDS)
async def lab(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_database: str | None,
) -> AsyncIterator[Lab]:
    kind = str(request.param)
    workdir = tmp_path_factory.mktemp(f"reliability-{kind}")
    if kind == "sqlite":
        db_uri = f"sqlite:///{workdir / 'santeguard.db'}"
    else:
        if pg_database is None:
            pytest.skip("PostgreSQL not available (set SANTEGUARD_REQUIRE_POSTGRES=1 to fail)")
        schema = f"reliability_{secrets.token_hex(4)}"
        conn = await asyncpg.connect(pg_database)
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.close()
        db_uri = f"{pg_database}?search_path={schema}"
    stack = DevStack(
        workdir,
        db_uri=db_uri,
        admins=["@admin:santeguard.test"],
        # Messages are not asked of the gate: they can be sent while SantéGuard is down.
        antispam_callbacks=("user_may_invite", "user_may_join_room"),
        config_overrides={"encryption": {"enabled": False}},
    )
    await stack.start()
    db = sender = None
    try:
        sg = stack.santeguard
        assert sg is not None
        await import_extract(sg.db, SAMPLE)
        entry = await sg.directory.lookup(DOCTOR)
        assert entry is not None and entry.active
        _, sender = await stack.practitioner("relia_doc", entry)
        rooms = [await protected_room(stack, sender) for _ in range(ROOMS)]
        config = _write_config(stack, workdir / "santeguard.yaml")
        await stack.stop_santeguard()  # from here on only child processes run
        db = open_database(db_uri)
        await db.start()
        yield Lab(stack, sender, rooms, config, db_uri, db, kind)
    finally:
        if sender is not None:
            await sender.close()
        if db is not None:
            await db.stop()
        await stack.stop()
