"""A real Synapse with short retention (a fast purge job, or retention off) beside
SantéGuard with short network bounds, once per database; the enforcement user is made a
server admin, as an operator would."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest

from bridge.devtools.stack import DevStack
from bridge.retention.admin_api import SynapseAdmin
from bridge.retention.audit import RetentionAudit
from bridge.retention.ledger import EventLedger, LedgerSubscriber

ROOM_LIFETIME_MS = 3000
NETWORK_RETENTION = {
    "min_lifetime": "1s",
    "default_max_lifetime": "5s",
    "max_lifetime": "20s",  # also the uploads' lifetime
    "purge_interval": "2s",
}
SYNAPSE_RETENTION_ON = {
    "retention": {
        "enabled": True,
        "allowed_lifetime_min": "1s",
        "allowed_lifetime_max": "1d",
        "purge_jobs": [{"interval": "1s"}],
    }
}
SYNAPSE_RETENTION_OFF = {"retention": {"enabled": False}}
MARGIN_MS = 1000


@dataclass
class RetentionLab:
    stack: DevStack
    admin: SynapseAdmin
    ledger: EventLedger
    feed: LedgerSubscriber

    def audit(self, admin: SynapseAdmin | None = None, **kw: Any) -> RetentionAudit:
        app = self.stack.santeguard
        assert app is not None
        cfg = app.config.retention
        return RetentionAudit(
            app.db,
            admin or self.admin,
            self.ledger,
            cfg.bounds,
            cfg.purge_interval_ms,
            app.audit,
            lambda: datetime.now(UTC),
            before_run=self.feed.flush,
            margin_ms=MARGIN_MS,
            **kw,
        )

    async def set_enforcer_admin(self, admin: bool) -> None:
        synapse = self.stack.synapse
        await synapse.request(
            "PUT",
            f"/_synapse/admin/v1/users/{quote(self.stack.enforcer_mxid)}/admin",
            token=await synapse.admin_token(),
            json={"admin": admin},
        )


async def _lab(
    kind: str,
    name: str,
    synapse_config: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
    pg_database: str | None,
) -> DevStack:
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
        config_overrides={"retention": NETWORK_RETENTION},
        homeserver_config=synapse_config,
    )
    await dev.start()
    return dev


def _ledger_of(dev: DevStack) -> tuple[EventLedger, LedgerSubscriber]:
    """The ledger SantéGuard feeds from its dispatcher."""
    app = dev.santeguard
    assert app is not None and app.retention.ledger is not None
    return app.retention.ledger.ledger, app.retention.ledger


async def _started(dev: DevStack) -> RetentionLab:
    app = dev.santeguard
    assert app is not None
    ledger, feed = _ledger_of(dev)
    admin = SynapseAdmin(dev.synapse.base_url, dev.as_token, dev.enforcer_mxid, app.session)
    lab = RetentionLab(dev, admin, ledger, feed)
    await lab.set_enforcer_admin(True)
    return lab


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
async def retention_on(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_database: str | None,
) -> AsyncIterator[RetentionLab]:
    dev = await _lab(request.param, "ret_on", SYNAPSE_RETENTION_ON, tmp_path_factory, pg_database)
    try:
        yield await _started(dev)
    finally:
        await dev.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
async def retention_off(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_database: str | None,
) -> AsyncIterator[RetentionLab]:
    dev = await _lab(request.param, "ret_off", SYNAPSE_RETENTION_OFF, tmp_path_factory, pg_database)
    try:
        yield await _started(dev)
    finally:
        await dev.stop()
