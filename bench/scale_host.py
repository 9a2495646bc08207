"""SantéGuard as ``bench.scale`` runs it: the wired application, its state loaded the
production way, and the measured operations.

:func:`bind_directory` imports a synthetic Annuaire Santé extract and binds the
network's verified users through the one binding path (``Binder.verify``, as
``!sg verify`` does). :func:`send_transactions` PUTs the network as appservice
transactions, one in flight, as Synapse sends them. The child process
(:func:`host_main`) runs one SantéGuard and answers commands over a pipe; the smoke test
calls the same functions in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import HS_TOKEN, make_config
from bench.scale_net import SERVER, Network

ADMIN = f"@admin:{SERVER}"
HOST_MAX_SECONDS = 3600  # a host stops by itself after this, whatever the parent does
# Jobs the benchmark runs itself (timed) or keeps off the measured periods: the sweeps
# run at start in production, which would overlap the gate and ingest measurements.
HELD_JOBS = (
    "reconcile",
    "retention_policy",
    "retention_audit",
    "retention_inactive",
    "reverify",
    "import_watch",
)


def scale_config(db_uri: str, homeserver: str, port: int, workdir: Path) -> Any:
    """The deployed defaults, on SQLite: every room protected, retention on."""
    return make_config(
        db_uri,
        homeserver,
        appservice={
            "port": port,
            "address": f"http://127.0.0.1:{port}",
            "max_body_bytes": 10 * 1024 * 1024,
        },
        gate={"protect_by_default": True},
        encryption={"enabled": False, "store_path": str(workdir / "crypto")},
        logging={"level": "ERROR"},
        bot={"admins": [ADMIN]},
    )


def hold_jobs(app: Any) -> None:
    """Keep the jobs in ``HELD_JOBS`` from running by themselves (benchmark only: the
    scheduler has no switch for it, so its table is edited before it starts)."""
    jobs = app.scheduler._jobs
    for name in HELD_JOBS:
        if name in jobs:
            jobs[name] = replace(
                jobs[name], first_delay_seconds=HOST_MAX_SECONDS, interval_seconds=HOST_MAX_SECONDS
            )


async def bind_directory(app: Any, net: Network, workdir: Path, concurrency: int = 8) -> int:
    """Import an extract of ``net.verified`` practitioners, then bind each verified user
    to one through ``Binder.verify``. Returns how many were bound."""
    from bench.extract_import import generate
    from bridge.identity.sources.extract import import_extract

    path = workdir / "PS_LibreAcces_Personne_activite_scale.txt"
    generate(path, int(net.verified * 1.4) + 50, seed=net.seed)
    report = await import_extract(app.db, path)
    path.unlink()
    rows = await app.db.fetch(
        "SELECT idnps FROM directory_practitioner WHERE import_id = $1 ORDER BY idnps LIMIT $2",
        report.import_id,
        net.verified,
    )
    if len(rows) < net.verified:
        raise RuntimeError(f"the extract has {len(rows)} practitioners, {net.verified} wanted")
    sem = asyncio.Semaphore(concurrency)
    bound = 0

    async def one(n: int, idnps: str) -> None:
        nonlocal bound
        async with sem:
            outcome = await app.binder.verify(
                net.user(n), idnps, source="manual", actor=ADMIN, name_confirmed=True
            )
        bound += outcome.ok

    await asyncio.gather(*(one(n, str(r["idnps"])) for n, r in enumerate(rows)))
    return bound


async def send_transactions(port: int, bodies: Sequence[bytes], prefix: str) -> list[float]:
    """PUT each body as a transaction, one in flight (as Synapse does); ack times in s."""
    url = f"http://127.0.0.1:{port}/_matrix/app/v1/transactions/{prefix}"
    headers = {"Authorization": f"Bearer {HS_TOKEN}", "Content-Type": "application/json"}
    acks: list[float] = []
    async with aiohttp.ClientSession() as session:
        for n, body in enumerate(bodies):
            t0 = time.perf_counter()
            async with session.put(f"{url}{n}", data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"transaction {n} answered {resp.status}")
            acks.append(time.perf_counter() - t0)
    return acks


async def drained(app: Any, timeout: float) -> None:
    """Until every stored event is handled and the ledger written."""
    deadline = time.monotonic() + timeout
    while await app.queue.depth() > 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{await app.queue.depth()} events still pending")
        await asyncio.sleep(0.2)
    await app.dispatcher.wait_idle(max(1.0, deadline - time.monotonic()))
    if app.retention.ledger is not None:
        await app.retention.ledger.flush()


def snapshot_counts(app: Any, net: Network) -> dict[str, int]:
    """What the in-memory snapshots hold, checked against the network."""
    rooms = [net.room_id(i) for i in range(net.rooms)]
    return {
        "verified": len(app.verifications.verified_users()),
        "bot_rooms": sum(app.rooms.is_joined(r) for r in rooms),
        "protected_rooms": sum(app.gatekeeper.is_protected(r) for r in rooms),
    }


def rss_mb(pid: int | None = None) -> float:
    """Resident set size now (``VmRSS``), in MB."""
    with open(f"/proc/{pid or os.getpid()}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def _timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = await fn()
    return time.perf_counter() - t0, out


async def _host(
    net: Network, db_uri: str, homeserver: str, port: int, parent: int, conn: Connection
) -> None:
    from bridge.app import SanteGuard

    logging.getLogger("santeguard").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="sg-scale-host-") as tmp:
        await _serve(
            SanteGuard(scale_config(db_uri, homeserver, port, Path(tmp))),
            net,
            Path(tmp),
            parent,
            conn,
        )


async def _serve(app: Any, net: Network, workdir: Path, parent: int, conn: Connection) -> None:
    hold_jobs(app)
    await app.start()
    conn.send({"started": True, "pid": os.getpid(), **snapshot_counts(app, net)})
    loop = asyncio.get_running_loop()
    try:
        while os.getppid() == parent:
            if not await loop.run_in_executor(None, conn.poll, 1.0):
                continue
            cmd = conn.recv()
            if cmd == "stop":
                break
            if cmd == "bind":
                seconds, out = await _timed(lambda: bind_directory(app, net, workdir))
                conn.send({"seconds": seconds, "bound": out})
            elif cmd == "drain":
                seconds, _ = await _timed(lambda: drained(app, HOST_MAX_SECONDS))
                conn.send({"seconds": seconds, **snapshot_counts(app, net)})
            elif cmd == "sweep":
                seconds, planned = await _timed(app.reconciler.sweep)
                conn.send({"seconds": seconds, "planned": planned})
            elif cmd == "audit":
                seconds, run = await _timed(app.retention.audit.run)
                conn.send({"seconds": seconds, **run.summary()})
            elif cmd == "counts":
                conn.send({"rss_mb": rss_mb(), "peak_mb": _peak_mb(), **snapshot_counts(app, net)})
    finally:
        await app.stop()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def host_main(
    net: Network, db_uri: str, homeserver: str, port: int, parent: int, conn: Connection
) -> None:
    """Child process: one SantéGuard; errors are reported to the parent over ``conn``."""
    try:
        asyncio.run(_host(net, db_uri, homeserver, port, parent, conn))
    except Exception as e:
        with contextlib.suppress(Exception):
            conn.send({"error": f"{type(e).__name__}: {e}"})
        raise
