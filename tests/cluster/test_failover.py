"""Two SantéGuard processes, one Synapse, one PostgreSQL database; the leader is
SIGKILLed mid-stream.

Synapse reaches the replicas through a round-robin balancer (as through a Kubernetes
Service): either one stores transactions and answers the gate. Only the leader
dispatches, runs the jobs and the bot. The admin types a stream of commands; the leader
is killed after the first replies; the follower takes over within seconds. Every
command is answered exactly once, in the order typed; the follower ran no job while it
followed, and no job twice; after `!sg unverify` handled by the leader, the follower's
gate refuses the practitioner within the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bridge.devtools.stack import DevStack
from bridge.devtools.testconfig import free_port
from bridge.identity.sources.extract import import_extract
from bridge.identity.sources.extract.lookup import current_import_id
from tests.cluster.balancer import Balancer
from tests.test_enforcement_durable import (
    DOCTOR,
    _end,
    _ping,
    _practitioner,
    _spawn,
    _write_config,
)
from tests.test_integration_identity import SAMPLE, admin_room, bot_says

pytestmark = pytest.mark.synapse

COMMANDS = 30
KILL_AFTER = 8  # replies seen before the leader is killed
TOPICS = ("ping", "status", "help")
# Jobs an hour or more apart: each may run at most once during the test.
LONG_JOBS = ("reverify", "reconcile", "retention_policy", "retention_audit", "audit_prune")
BOUND = 3.0  # cluster.max_staleness_seconds in this test
CLUSTER = {
    "heartbeat_seconds": 0.5,
    "lease_poll_seconds": 0.5,
    "takeover_grace_seconds": 1.0,
    "max_staleness_seconds": BOUND,
}


def _replica_config(base: Path, out: Path, name: str, port: int) -> Path:
    data = yaml.safe_load(base.read_text())
    data["appservice"]["port"] = port
    data["cluster"] = {**CLUSTER, "replica_id": name}
    out.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    out.chmod(0o600)
    return out


async def _get(url: str) -> tuple[int, str]:
    with contextlib.suppress(aiohttp.ClientError, OSError):
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return resp.status, await resp.text()
    return 0, ""


async def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.1)


async def _leads(url: str) -> bool:
    status, text = await _get(f"{url}/metrics")
    return status == 200 and "santeguard_cluster_leader 1.0" in text


async def _gate_join(stack: DevStack, url: str, user: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}{stack.config().antispam.path}/user_may_join_room",
            json={"user": user, "room": "!any:santeguard.test", "is_invited": True},
            headers={"Authorization": f"Bearer {stack.gate_token}"},
        ) as resp,
    ):
        return resp.status


def _topic(event: dict[str, Any]) -> str | None:
    first = str(event.get("content", {}).get("body", "")).split("\n", 1)[0]
    found = [t for t in TOPICS if f"!sg {t}" in first]
    return found[0] if len(found) == 1 else None


@pytest.mark.parametrize("gated_stack", ["postgres"], indirect=True)
async def test_leader_killed_follower_takes_over(gated_stack: DevStack, tmp_path: Path) -> None:
    stack = gated_stack
    sg = stack.santeguard
    assert sg is not None
    if await current_import_id(sg.db) is None:
        await import_extract(sg.db, SAMPLE)
    admin, room = await admin_room(stack)
    doc = await _practitioner(stack, "relais", DOCTOR)
    await doc.close()
    base = _write_config(stack, tmp_path / "base.yaml")
    ports = {"a": free_port(), "b": free_port()}
    urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    balancer = Balancer(stack.as_port, [urls["a"], urls["b"]])
    runs_before = await _job_runs(stack)
    await stack.stop_santeguard()  # from here on only the two replicas run
    try:
        for name in ("a", "b"):
            cfg = _replica_config(base, tmp_path / f"{name}.yaml", name, ports[name])
            procs[name] = _spawn(cfg, tmp_path / f"run-{name}")
            await _until(lambda n=name: _health(urls[n], procs[n]), 60, f"replica {name} listening")
            if name == "a":
                await _until(lambda: _leads(urls["a"]), 30, "a leads")
        await balancer.start()
        await _ping(stack)
        assert not await _leads(urls["b"])

        # The gate follows the database on both: unverify on the leader, B refuses.
        user = doc.user_id
        assert await _gate_join(stack, urls["b"], user) == 200
        await admin.send_text(room, f"!sg unverify {user}")
        await admin.wait_for_recent(room, bot_says(stack, f"{user} n'est plus vérifié"), 60)
        unverified = time.monotonic()
        await _until(
            lambda: _refused(stack, urls["b"], user), BOUND + 2, "B refuses the unverified"
        )
        assert time.monotonic() - unverified < BOUND + 2

        # The follower ran no scheduled job while it followed.
        _, metrics_b = await _get(f"{urls['b']}/metrics")
        assert 'santeguard_job_runs_total{job="reverify",outcome="ok"}' not in metrics_b

        # A stream of commands; the leader dies after the first replies.
        sent: list[str] = []
        for i in range(COMMANDS):
            sent.append(await admin.send_text(room, f"!sg help {TOPICS[i % len(TOPICS)]}"))

        async def replies() -> list[str]:
            """The topics of the bot's answers after the first command, in room order."""
            events = list(reversed(await admin.recent_events(room, limit=200)))
            ids = [e.get("event_id") for e in events]
            start = ids.index(sent[0]) if sent[0] in ids else 0
            return [
                t
                for e in events[start:]
                if e.get("sender") == stack.bot_mxid and (t := _topic(e)) is not None
            ]

        await _until(
            lambda: _at_least(replies, KILL_AFTER), 120, f"{KILL_AFTER} replies before the kill"
        )
        await _end(procs["a"], signal.SIGKILL)
        killed = time.monotonic()
        await _until(lambda: _leads(urls["b"]), 30, "b takes over")
        takeover = time.monotonic() - killed
        await _ping(stack)
        await _until(lambda: _at_least(replies, COMMANDS), 180, "every command answered")
        await asyncio.sleep(2)  # anything answered twice would show by now
        got = await replies()
        expected = [TOPICS[i % len(TOPICS)] for i in range(COMMANDS)]
        assert got == expected, f"answers out of order or repeated: {got}"
        print(f"takeover in {takeover:.1f} s; balancer served {balancer.served}")
        assert takeover < 10

        # No job twice: each hourly-or-slower job ran at most once across both replicas
        # and the takeover (the new leader waits until the job is due).
        runs_after = await _job_runs(stack)
        for name in LONG_JOBS:
            ran = runs_after.get(name, 0) - runs_before.get(name, 0)
            assert ran <= 1, f"job {name} ran {ran} times across the failover"
        leaders = await _leaders(stack)
        assert leaders[-2:] == ["a", "b"]
    finally:
        await balancer.stop()
        for proc in procs.values():
            await _end(proc, signal.SIGKILL)
        sg2 = await stack.start_santeguard()  # the session's stack, as it was
        await asyncio.wait_for(sg2.bot_ready.wait(), 60)
        await _ping(stack)
        await admin.close()


async def _health(url: str, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"a replica exited with {proc.returncode}")
    return (await _get(f"{url}/health"))[0] == 200


async def _refused(stack: DevStack, url: str, user: str) -> bool:
    return await _gate_join(stack, url, user) == 403


async def _at_least(replies: Any, n: int) -> bool:
    return len(await replies()) >= n


async def _job_runs(stack: DevStack) -> dict[str, int]:
    from bridge.db.database import open_database

    db = open_database(stack.config().database.uri)
    await db.start()
    try:
        return {str(r["name"]): int(r["runs"]) for r in await db.fetch("SELECT * FROM job_run")}
    finally:
        await db.stop()


async def _leaders(stack: DevStack) -> list[str]:
    from bridge.db.database import open_database

    db = open_database(stack.config().database.uri)
    await db.start()
    try:
        rows = await db.fetch(
            "SELECT actor FROM audit_log WHERE action = 'cluster.leader' ORDER BY seq"
        )
        return [str(r["actor"]) for r in rows]
    finally:
        await db.stop()
