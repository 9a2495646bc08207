"""A real mail service (aiosmtpd relay + Dovecot, certificates made now) beside a real
Synapse and SantéGuard with the mail bridge on, once per database."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bridge.devtools.maillab import MailLab
from bridge.devtools.stack import DevStack


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
async def mail_stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_database: str | None,
) -> AsyncIterator[tuple[DevStack, MailLab]]:
    """A protected network (rooms protected and encrypted) with the mail bridge on, and
    its own mail service (each database gets an empty mailbox)."""
    kind = request.param
    workdir: Path = tmp_path_factory.mktemp(f"mailstack-{kind}")
    if kind == "sqlite":
        db_uri = f"sqlite:///{workdir / 'santeguard.db'}"
    else:
        if pg_database is None:
            pytest.skip("PostgreSQL not available (set SANTEGUARD_REQUIRE_POSTGRES=1 to fail)")
        schema = f"mail_{secrets.token_hex(4)}"
        conn = await asyncpg.connect(pg_database)
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.close()
        db_uri = f"{pg_database}?search_path={schema}"
    mail_lab = MailLab(workdir / "mail")
    await mail_lab.start()
    dev = DevStack(
        workdir,
        db_uri=db_uri,
        admins=["@admin:santeguard.test"],
        config_overrides={"mail": mail_lab.mail_config()},
    )
    await dev.start()
    try:
        yield dev, mail_lab
    finally:
        await dev.stop()
        await mail_lab.stop()
