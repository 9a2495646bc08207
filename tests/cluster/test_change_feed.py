"""Two replicas on one PostgreSQL database (two SantéGuard instances in this process, no
homeserver needed): a change made on one reaches the other's gate within the bound, and
a replica cut off from the database refuses instead of deciding on a stale snapshot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from bridge.app import SanteGuard
from bridge.identity.model import Verification
from tests.cluster.tcpproxy import TcpProxy
from tests.helpers import GATE_TOKEN, make_config

USER = "@doc:santeguard.test"
ROOM = "!soins:santeguard.test"
CLUSTER = {
    "heartbeat_seconds": 0.2,
    "lease_poll_seconds": 0.2,
    "takeover_grace_seconds": 0,
    "max_staleness_seconds": 1.0,
    "refresh_seconds": 60,
}


def _config(uri: str) -> Any:
    return make_config(uri, gate={"protect_by_default": True}, cluster=CLUSTER)


async def _join(session: aiohttp.ClientSession, app: SanteGuard) -> tuple[int, str]:
    """Synapse asking ``app``'s gate whether USER may join ROOM (a protected room)."""
    url = f"{app.config.appservice.address}{app.config.antispam.path}/user_may_join_room"
    async with session.post(
        url,
        json={"user": USER, "room": ROOM, "is_invited": True},
        headers={"Authorization": f"Bearer {GATE_TOKEN}"},
    ) as resp:
        body = await resp.json(content_type=None)
        return resp.status, str(body.get("error", ""))


def _verification() -> Verification:
    now = datetime.now(UTC)
    return Verification(
        source="manual",
        idnps="810999990012",
        profession_code="10",
        last_name="Martin",
        first_name="Claire",
        checked_at=now,
        valid_until=now + timedelta(days=30),
    )


@pytest.fixture
async def replicas(pg_uri: str) -> AsyncIterator[tuple[SanteGuard, SanteGuard, TcpProxy]]:
    """Replica A (the leader) on the database directly; B (a follower) through a proxy."""
    dsn = urlsplit(pg_uri)
    proxy = TcpProxy(dsn.hostname or "127.0.0.1", dsn.port or 5432)
    await proxy.start()
    b_uri = pg_uri.replace(f"{dsn.hostname}:{dsn.port}", f"127.0.0.1:{proxy.port}", 1)
    a, b = SanteGuard(_config(pg_uri)), SanteGuard(_config(b_uri))
    await a.start()
    await b.start()
    try:
        assert a.cluster.lease.leader and not b.cluster.lease.leader
        yield a, b, proxy
    finally:
        proxy.restore()
        await b.stop()
        await a.stop()
        await proxy.stop()


async def test_unverify_reaches_other_replica_within_bound(
    replicas: tuple[SanteGuard, SanteGuard, TcpProxy],
) -> None:
    a, b, _ = replicas
    bound = b.config.cluster.max_staleness_seconds
    async with aiohttp.ClientSession() as http:
        assert (await _join(http, b))[0] == 403  # not verified yet, anywhere
        await a.verifications.bind(USER, _verification(), "@admin:santeguard.test")
        started = time.monotonic()
        while (await _join(http, b))[0] != 200:
            assert time.monotonic() - started < bound, "B never saw the binding"
            await asyncio.sleep(0.01)

        # `!sg unverify` on the leader: unbinding committed there...
        await a.verifications.unbind(USER)
        removed = time.monotonic()
        while (status := (await _join(http, b))[0]) == 200:
            assert time.monotonic() - removed < bound, "B still admits after the bound"
            await asyncio.sleep(0.01)
        lag = time.monotonic() - removed
        assert status == 403
        print(f"unbinding seen by the other replica after {lag * 1000:.0f} ms (bound {bound} s)")
        # ...and it stays refused (no stale reload brings it back).
        await asyncio.sleep(0.5)
        assert (await _join(http, b))[0] == 403
    assert b.verifications.verification(USER) is None
    assert b.cluster.feed.reloads("verification") >= 2


async def test_replica_cut_off_from_the_database_refuses_after_the_bound(
    replicas: tuple[SanteGuard, SanteGuard, TcpProxy],
) -> None:
    a, b, proxy = replicas
    await a.verifications.bind(USER, _verification(), "@admin:santeguard.test")
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 5
        while (await _join(http, b))[0] != 200:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)

        proxy.sever()  # B loses the database: it cannot know what A changes now
        await a.verifications.unbind(USER)
        # B's snapshot still says "verified": the freshness bound stops it admitting.
        deadline = time.monotonic() + b.config.cluster.max_staleness_seconds + 2
        while True:
            status, error = await _join(http, b)
            if status == 403:
                break
            assert time.monotonic() < deadline, "B kept admitting past the bound"
            await asyncio.sleep(0.05)
        assert "à jour" in error  # the stale refusal, in French, not a verdict on the user
        async with http.get(f"{b.config.appservice.address}/ready") as resp:
            assert resp.status == 503
            assert (await resp.json())["checks"]["change_feed"] is False
        assert "santeguard_cluster_stale_refusals_total" in b.metrics.render().decode()

        proxy.restore()  # back: B reloads everything and refuses on the facts now
        deadline = time.monotonic() + 10
        while b.cluster.feed.stale:
            assert time.monotonic() < deadline, "B never caught up"
            await asyncio.sleep(0.05)
        status, error = await _join(http, b)
        assert status == 403 and "à jour" not in error
