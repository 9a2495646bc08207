"""Outages of SantéGuard's dependencies, with real parts: what stays up, what fails
closed, what is reported (``/ready``, metrics, admin alerts) and what is caught up.

- PostgreSQL restarted (a private cluster made by ``initdb``, never the shared server):
  two replicas, the leader a ``santeguard run`` process, the follower in this one.
  During the outage the follower stays up, reports the database down in ``/ready`` and
  ``santeguard_dependency_up``, refuses the gate (its snapshot can no longer be
  confirmed fresh) and answers the homeserver's transactions with a 500, so the
  homeserver retries them; the leader cannot know it still holds its lease and exits
  (as designed: its supervisor restarts it as a follower, docs/cluster.md). After the
  restart the follower leads, stores and handles the retried transaction, admits
  again, and tells the admins how long the database was gone.
- The FHIR directory down (a local fake Annuaire Santé): a new practitioner is not
  bound (fail closed), the admins are told, and once the API answers again the
  tracker sees it by itself and the re-verification runs at once.
- The homeserver down (every request SantéGuard makes fails at the fault proxy): the
  outage is in ``/ready`` and the metrics at once, and the admin room is told only
  once the homeserver is back ("was unreachable from … to …").

Elsewhere: the SMTP relay down is tests/mail/test_outage.py (it needs the session's
mail stack); Dovecot restarted while mail arrives (the poller reconnects, each mail
posted exactly once) is tests/mail/test_crash.py; a replica killed (the follower takes
over, nothing lost or doubled) is tests/cluster/test_failover.py.

``SANTEGUARD_LONG_TESTS=1`` keeps each outage up for a minute under traffic and bounds
the memory growth (tests/reliability/outage_kit.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import yaml
from aiohttp.test_utils import TestServer

from bridge.app import SanteGuard
from bridge.config import Config
from bridge.devtools.stack import DevStack
from bridge.devtools.testconfig import GATE_TOKEN, HS_TOKEN, free_port, make_config
from bridge.identity.model import DirectoryUnavailable
from bridge.ops.text import CATALOG
from tests.directory.test_fhir import API_KEY, Fake, make_app
from tests.helpers import message_event
from tests.reliability import privatepg
from tests.reliability.outage_kit import (
    HEAP_GROWTH_BOUND_MB,
    LONG,
    Endpoints,
    Memory,
    alert_log,
    figure,
    fragment,
    until,
)
from tests.test_enforcement_durable import _end, _plain, _spawn
from tests.test_integration_identity import admin_room, bot_says

FR = CATALOG["fr"]
OUTAGE_SECONDS = 60.0 if LONG else 0.0  # beyond the time to see it (long: under traffic)
ALERT_AFTER = 1.0  # outages.alert_after in these tests (60 s in production)
CLUSTER = {
    "heartbeat_seconds": 0.5,
    "lease_poll_seconds": 0.5,
    "takeover_grace_seconds": 0.5,
    "max_staleness_seconds": 2.0,
}
BOT = "@santeguard:santeguard.test"  # exempt from the gate: admitted whenever it decides


def endpoints(app: SanteGuard) -> Endpoints:
    return endpoints_for(app.config)


def endpoints_for(cfg: Config) -> Endpoints:
    return Endpoints(
        f"http://127.0.0.1:{cfg.appservice.port}",
        hs_token=HS_TOKEN,
        gate_token=GATE_TOKEN,
        gate_path=cfg.antispam.path,
    )


async def _traffic(api: Endpoints, seconds: float) -> int:
    """The homeserver's side during an outage: transactions and gate callbacks, all
    refused; returns how many requests were made."""
    n, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        await api.put_txn(f"refused-{n}", [message_event("!t:santeguard.test", 10_000 + n)])
        await api.gate_join(BOT)
        n += 2
        await asyncio.sleep(0.05)
    return n


# -- PostgreSQL restarted ----------------------------------------------------------------


@pytest.fixture
def private_pg() -> Iterator[privatepg.PrivatePostgres]:
    if not privatepg.available():
        pytest.skip("no PostgreSQL binaries (initdb) to make a private cluster")
    pg = privatepg.PrivatePostgres()
    try:
        pg.init()
        yield pg
    finally:
        pg.destroy()


async def test_postgres_restart(
    private_pg: privatepg.PrivatePostgres, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pg = private_pg
    # The leader, a process of its own: it stops leading when it loses the lease, stays
    # up and campaigns again.
    leader_cfg = make_config(pg.dsn, cluster={**CLUSTER, "replica_id": "a"})
    leader = _spawn(_config_file(leader_cfg, tmp_path / "a.yaml"), tmp_path / "run-a")
    leader_api = endpoints_for(leader_cfg)
    b = SanteGuard(make_config(pg.dsn, cluster={**CLUSTER, "replica_id": "b"}))
    b.outages.alert_after = ALERT_AFTER
    api = endpoints(b)
    memory = Memory("postgres restart")
    try:
        await until(lambda: _metric_is(leader_api, "santeguard_cluster_leader", 1), "a leads")
        await b.start()
        with alert_log() as alerts:
            room = "!pg:santeguard.test"
            assert await api.put_txn("before", [message_event(room, 1)]) == 200
            assert await api.gate_join(BOT) == 200
            await until(lambda: _database_up(api, True), "database seen up")
            memory.sample("before")

            await asyncio.to_thread(pg.stop)
            down_at = time.monotonic()
            await until(lambda: _database_up(api, False), "database seen down")
            status, body = await api.ready()
            assert status == 503 and body["checks"]["database"] is False
            assert body["dependencies"]["database"]["up"] is False
            # The homeserver's transaction is refused, so it keeps it and retries.
            assert await api.put_txn("during", [message_event(room, 2)]) >= 500
            # Fail closed: once the snapshot cannot be confirmed fresh, refuse.
            await until(lambda: _refused(api), "the follower's gate refuses")
            figure("postgres: gate refuses after (s)", round(time.monotonic() - down_at, 1))
            # The leader cannot know it still holds the lease: it stops leading, and stays.
            await until(lambda: _metric_is(leader_api, "santeguard_cluster_leader", 0), "a stops")
            assert leader.poll() is None, "the replica that lost the lease exited"
            requests = await _traffic(api, OUTAGE_SECONDS)
            # Each refused transaction is one line, not a traceback flooding the log.
            refusals = [
                r for r in caplog.records if r.getMessage().startswith("Could not store trans")
            ]
            assert refusals and not [r for r in refusals if r.exc_info], "tracebacks logged"
            down = fragment(FR["alert.outage_down.database"])
            await until(lambda: _async(alerts.matching(down)), "the database-down alert")
            memory.sample("during")

            await asyncio.to_thread(pg.start)
            up_at = time.monotonic()
            await until(lambda: _database_up(api, True), "database seen up again")
            await until(lambda: _one_leads(b, leader_api), "one of the two leads again")
            assert leader.poll() is None
            # The homeserver's retry of the refused transaction is stored and handled.
            assert await api.put_txn("during", [message_event(room, 2)]) == 200
            await until(lambda: _done(b, ("before", "during")), "both transactions handled")
            await until(lambda: _admits(api), "the gate admits again")
            figure("postgres: caught up after restart (s)", round(time.monotonic() - up_at, 1))
            back = fragment(FR["alert.outage_up.database"])
            await until(lambda: _async(alerts.matching(back)), "the recovery alert")
            assert not await b.db.fetchval(
                "SELECT count(*) FROM txn WHERE txn_id LIKE 'refused-%'"
            ), "a refused transaction was stored"
            figure("postgres: requests refused during the long outage", requests)
            memory.sample("after")
        memory.check()
    finally:
        memory.close()
        await _end(leader, signal.SIGTERM)
        await b.stop()
        await api.close()
        await leader_api.close()


async def test_postgres_restart_lone_replica(
    private_pg: privatepg.PrivatePostgres, tmp_path: Path
) -> None:
    """One replica on PostgreSQL (``santeguard run``): it loses the lease when the
    database restarts, stays up meanwhile (``/ready`` says why, the gate fails closed),
    leads again once the database is back, and handles the homeserver's retry."""
    pg = private_pg
    cfg = make_config(pg.dsn, cluster={**CLUSTER, "replica_id": "solo"})
    proc = _spawn(_config_file(cfg, tmp_path / "solo.yaml"), tmp_path / "run-solo")
    api = endpoints_for(cfg)
    room = "!solo:santeguard.test"
    try:
        await until(lambda: _metric_is(api, "santeguard_cluster_leader", 1), "it leads")
        assert await api.put_txn("before", [message_event(room, 1)]) == 200

        await asyncio.to_thread(pg.stop)
        await until(lambda: _metric_is(api, "santeguard_cluster_leader", 0), "it stops leading")
        await until(lambda: _refused(api), "its gate refuses")
        status, body = await api.ready()
        assert status == 503 and body["checks"]["database"] is False
        assert await api.put_txn("during", [message_event(room, 2)]) >= 500
        rss_before = _rss_of(proc.pid)
        await asyncio.sleep(2 * CLUSTER["lease_poll_seconds"])  # campaigns meanwhile
        requests = await _traffic(api, OUTAGE_SECONDS)  # the long mode: a minute of it
        assert proc.poll() is None, "the lone replica exited"
        rss_after = _rss_of(proc.pid)
        figure("postgres, lone replica: requests refused during the outage", requests)
        figure("postgres, lone replica: RSS MB before / after the outage", (rss_before, rss_after))
        if LONG:  # flat memory while it campaigns and refuses
            assert rss_after - rss_before < HEAP_GROWTH_BOUND_MB

        await asyncio.to_thread(pg.start)
        up_at = time.monotonic()
        await until(lambda: _metric_is(api, "santeguard_cluster_leader", 1), "it leads again")
        figure(
            "postgres, lone replica: leads again after restart (s)",
            round(time.monotonic() - up_at, 1),
        )
        assert await api.put_txn("during", [message_event(room, 2)]) == 200
        await until(lambda: _handled(pg.dsn, ("before", "during")), "both handled")
        await until(lambda: _admits(api), "the gate admits again")
        await until(lambda: _ready_database(api), "/ready sees the database again")
        assert proc.poll() is None
        conn = await asyncpg.connect(pg.dsn)
        try:
            refused = await conn.fetchval("SELECT count(*) FROM txn WHERE txn_id LIKE 'refused-%'")
        finally:
            await conn.close()
        assert refused == 0, "a refused transaction was stored"
    finally:
        await _end(proc, signal.SIGTERM)
        await api.close()


def _rss_of(pid: int) -> float:
    """A child process's resident memory, MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for process {pid}")


async def _ready_database(api: Endpoints) -> bool:
    """``/ready`` has the database back (this test runs no homeserver, so it stays 503
    for the homeserver's check)."""
    _, body = await api.ready()
    return bool(body["checks"]["database"] is True and body["dependencies"]["database"]["up"])


async def _handled(dsn: str, txn_ids: tuple[str, ...]) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT txn_id, status FROM txn")
    finally:
        await conn.close()
    status = {r["txn_id"]: r["status"] for r in rows}
    return all(status.get(t) == "handled" for t in txn_ids)


def _config_file(config: Config, path: Path) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        yaml.safe_dump(_plain(config.model_dump()), f, sort_keys=False, allow_unicode=True)
    return path


async def _metric_is(api: Endpoints, name: str, value: float) -> bool:
    try:
        return await api.metric(name) == value
    except aiohttp.ClientError:
        return False  # not listening yet


async def _async(value: object) -> object:
    return value


async def _one_leads(app: SanteGuard, other: Endpoints) -> bool:
    other_leads = await other.metric("santeguard_cluster_leader") == 1
    return app.cluster.lease.leader != other_leads


async def _database_up(api: Endpoints, up: bool) -> bool:
    return await api.metric("santeguard_dependency_up", dependency="database") == (
        1.0 if up else 0.0
    )


async def _refused(api: Endpoints) -> bool:
    return await api.gate_join(BOT) == 403


async def _admits(api: Endpoints) -> bool:
    return await api.gate_join(BOT) == 200


async def _done(app: SanteGuard, txn_ids: tuple[str, ...]) -> bool:
    rows = await app.db.fetch("SELECT txn_id, status FROM txn")
    status = {r["txn_id"]: r["status"] for r in rows}
    return all(status.get(t) == "handled" for t in txn_ids)


# -- the FHIR directory down -------------------------------------------------------------


class FhirApi:
    """The fake Annuaire Santé on a fixed port, to stop and start again."""

    def __init__(self, fake: Fake) -> None:
        self.port = free_port()
        self._fake = fake
        self._server: TestServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    async def start(self) -> None:
        self._server = TestServer(make_app(self._fake), host="127.0.0.1", port=self.port)
        await self._server.start_server()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None


async def test_directory_down(tmp_path: Path, data_dir: Path) -> None:
    fake = Fake(data_dir)
    api_server = FhirApi(fake)
    await api_server.start()
    config = make_config(
        f"sqlite:///{tmp_path / 'sg.db'}",
        directory={
            "source": "fhir",
            "fhir_base_url": api_server.url,
            "fhir_api_key": API_KEY,
            "retries": 0,
            "cache_ttl_seconds": 0,
        },
    )
    app = SanteGuard(config)
    app.outages.alert_after = ALERT_AFTER
    await app.start()
    # No homeserver in this test: the jobs that wait for the bot's registration (the
    # re-verification among them) are let run without it.
    app.bot_ready.set()
    api = endpoints(app)
    memory = Memory("directory down")
    idnps = "810999990020"  # active in the fake directory
    user = "@nouvelle:santeguard.test"
    try:
        bound = await app.binder.verify(
            "@ancien:santeguard.test", "810999990012", source="manual", actor="@admin:x"
        )
        assert bound.status == "bound"
        await until(lambda: _job_runs(api, "reverify"), "the start-up re-verification")
        with alert_log() as alerts:
            memory.sample("before")
            await api_server.stop()
            # Fail closed: a new practitioner is not bound while the directory is down.
            with pytest.raises(DirectoryUnavailable):
                await app.binder.verify(user, idnps, source="manual", actor="@admin:x")
            assert app.verifications.verification(user) is None
            await until(lambda: _directory_up(api, False), "the directory seen down")
            _, body = await api.ready()
            assert body["dependencies"]["directory"]["up"] is False
            assert "directory" not in body["checks"]  # degraded, not unready
            down = fragment(FR["alert.outage_down.directory"])
            await until(lambda: _async(alerts.matching(down)), "the directory-down alert")
            await asyncio.sleep(OUTAGE_SECONDS)
            memory.sample("during")
            reverify_runs = await _job_runs(api, "reverify")

            await api_server.start()  # the tracker retries the failed lookup by itself
            back = fragment(FR["alert.outage_up.directory"])
            await until(lambda: _async(alerts.matching(back)), "the recovery alert")
            await until(lambda: _directory_up(api, True), "the directory seen up")
            await until(
                lambda: _more_runs(api, "reverify", reverify_runs), "re-verification at once"
            )
            outcome = await app.binder.verify(user, idnps, source="manual", actor="@admin:x")
            assert outcome.status == "bound"  # the directory decides again
            memory.sample("after")
        memory.check()
    finally:
        memory.close()
        await app.stop()
        await api.close()
        await api_server.stop()


async def _directory_up(api: Endpoints, up: bool) -> bool:
    value = await api.metric("santeguard_dependency_up", dependency="directory")
    return value == (1.0 if up else 0.0)


async def _job_runs(api: Endpoints, job: str) -> float:
    return (await api.metric("santeguard_job_runs_total", job=job, outcome="ok") or 0) + (
        await api.metric("santeguard_job_runs_total", job=job, outcome="failed") or 0
    )


async def _more_runs(api: Endpoints, job: str, before: float) -> bool:
    return await _job_runs(api, job) > before


# -- the homeserver down -----------------------------------------------------------------


@pytest.mark.synapse
@pytest.mark.parametrize("faulty_stack", ["sqlite"], indirect=True)
async def test_homeserver_down_told_after_recovery(faulty_stack: DevStack) -> None:
    stack = faulty_stack
    sg = stack.santeguard
    assert sg is not None
    admin, room = await admin_room(stack)
    # The admin room the alerts go to (gate.admin_room), for this test only.
    saved = sg.alerts._room, sg.outages.alert_after
    sg.alerts._room, sg.outages.alert_after = room, ALERT_AFTER
    api = endpoints_of(stack)
    memory = Memory("homeserver down")
    try:
        with alert_log() as alerts:
            memory.sample("before")
            cut = stack.proxy.fail(".*", ".*")  # every request SantéGuard makes: 502
            await until(lambda: _homeserver_up(api, False), "homeserver seen down")
            status, body = await api.ready()
            assert status == 503 and body["checks"]["homeserver"] is False
            assert body["dependencies"]["homeserver"]["up"] is False
            await asyncio.sleep(max(OUTAGE_SECONDS, ALERT_AFTER * 2))
            # Nothing about it can reach the admin room now: nothing is said yet.
            assert not alerts.matching("Le serveur Matrix")
            memory.sample("during")
            stack.proxy.remove(cut)

            await until(lambda: _homeserver_up(api, True), "homeserver seen up again")
            told = fragment(FR["alert.outage_up.homeserver"])
            await admin.wait_for_recent(room, bot_says(stack, told), 30)
            assert len(alerts.matching(told)) == 1
            memory.sample("after")
        memory.check()
    finally:
        memory.close()
        stack.proxy.clear()
        sg.alerts._room, sg.outages.alert_after = saved
        await api.close()
        await admin.close()


def endpoints_of(stack: DevStack) -> Endpoints:
    return Endpoints(
        f"http://127.0.0.1:{stack.as_port}",
        hs_token=stack.hs_token,
        gate_token=stack.gate_token,
        gate_path=stack.config().antispam.path,
    )


async def _homeserver_up(api: Endpoints, up: bool) -> bool:
    return await api.metric("santeguard_dependency_up", dependency="homeserver") == (
        1.0 if up else 0.0
    )
