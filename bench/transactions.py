"""Transaction ingest: SantéGuard's durable endpoint vs two baselines, in the same run.

Baselines: a bare aiohttp handler (token check, JSON parse, 200) and mautrix-python's
``AppService`` with a no-op event handler (it deserialises every event, acks, and runs
its handlers after the ack; it stores nothing). Beside them, for each database, the
durable floor: the bare handler plus one committed INSERT of the body before the 200
(what the fsync alone costs on this disk; ``--no-floor`` skips it). Each receiver runs
in its own process; this process is the homeserver stand-in and, like Synapse, keeps
one transaction in flight (concurrency 1). SantéGuard runs with production defaults:
protected rooms, ``sqlite_synchronous: full`` (``sqlite-normal`` for the option), the
dispatcher handling every event in the same process. Traffic
(``bench/ingest_traffic.py``): ``production`` (90 % megolm ``m.room.encrypted``, 10 %
practitioners' memberships) or ``plain`` (the older clear ``m.room.message`` load into
unprotected rooms).

Prints events/s, ack p50/p99 and the ratios to the bare handler and to mautrix (each
taken against the baselines of the same round; median of ``--repeat`` rounds), and for
SantéGuard the rate at which the dispatcher had handled everything ("drained"), and each
receiver's CPU time per event over its run (µs, all its threads; SantéGuard's until
drained, so its handlers' cost is in it): a figure that moves less with the machine's
load than the rates. ``SANTEGUARD_BENCH_CPROFILE=1`` makes ``--profile`` use cProfile
(self times, a ``.prof`` file) instead of pyinstrument.

    python -m bench.transactions --db sqlite --db sqlite-normal --db postgres
    python -m bench.transactions --db sqlite --profile /tmp/prof   # profile SantéGuard
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.common import HS_TOKEN, free_port, quantile
from bench.ingest_receivers import (
    serve_bare,
    serve_floor,
    serve_homeserver,
    serve_mautrix,
    serve_santeguard,
)
from bench.ingest_traffic import ProductionTraffic, plain_bodies

PG_ADMIN = os.environ.get("SANTEGUARD_TEST_PG", "postgres://postgres@127.0.0.1:5432/test")
WARMUP = 20
BARE = "bare aiohttp (parse + ack)"
MAUTRIX = "mautrix AppService (no-op handler)"


@dataclass
class Load:
    setup: list[bytes]  # the rooms' state and first members (not timed)
    warmup: list[bytes]  # not timed
    timed: list[bytes]
    events: int  # events in all of the above


@dataclass
class Run:
    elapsed: float
    latencies: list[float]
    drained: float | None = None  # until every event was handled (SantéGuard only)
    cpu: float | None = None  # the receiver's CPU seconds over the same span (Linux)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (all its threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(traffic: str, txns: int, events: int) -> Load:
    if traffic == "plain":
        bodies = plain_bodies(txns + WARMUP, events)
        load = Load([], bodies[:WARMUP], bodies[WARMUP:], 0)
    else:
        gen = ProductionTraffic()
        load = Load(gen.setup_bodies(), gen.bodies(WARMUP, events), gen.bodies(txns, events), 0)
    load.events = sum(
        len(json.loads(b)["events"]) for b in (*load.setup, *load.warmup, *load.timed)
    )
    return load


async def _handled(s: aiohttp.ClientSession, port: int) -> float:
    async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        if line.startswith('santeguard_events_handled_total{outcome="done"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _drive(port: int, pid: int, load: Load, prefix: str, drain: bool) -> Run:
    url = f"http://127.0.0.1:{port}/_matrix/app/v1/transactions/{prefix}"
    headers = {"Authorization": f"Bearer {HS_TOKEN}", "Content-Type": "application/json"}
    lat: list[float] = []
    async with aiohttp.ClientSession() as s:

        async def put(txn_id: str, body: bytes) -> None:
            async with s.put(url + txn_id, data=body, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"receiver answered {r.status}")

        for i, body in enumerate([*load.setup, *load.warmup]):
            await put(f"w{i}", body)
        start = time.perf_counter()
        cpu0 = _cpu_seconds(pid)
        for i, body in enumerate(load.timed):
            t0 = time.perf_counter()
            await put(str(i), body)
            lat.append(time.perf_counter() - t0)
        run = Run(time.perf_counter() - start, lat)
        if drain:
            deadline = time.monotonic() + 120
            while await _handled(s, port) < load.events:
                if time.monotonic() > deadline:
                    raise RuntimeError("SantéGuard did not handle every event in 120 s")
                await asyncio.sleep(0.1)
            run.drained = time.perf_counter() - start
        cpu1 = _cpu_seconds(pid)
        if cpu0 is not None and cpu1 is not None:
            run.cpu = cpu1 - cpu0
        return run


def _start(target: Any, args: tuple[Any, ...]) -> tuple[Any, int]:
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    port = free_port()
    proc = ctx.Process(target=target, args=(*args, port, ready), daemon=True)
    proc.start()
    if not ready.wait(120):
        _stop(proc)
        raise RuntimeError(f"{target.__name__} did not start")
    return proc, port


def _stop(proc: Any) -> None:
    proc.terminate()  # a profiled receiver writes its profile, then exits
    proc.join(60)
    if proc.is_alive():
        proc.kill()
        proc.join(5)


def _run_receiver(target: Any, args: tuple[Any, ...], load: Load, prefix: str, drain: bool) -> Run:
    proc, port = _start(target, args)
    try:
        return asyncio.run(_drive(port, proc.pid, load, prefix, drain))
    finally:
        _stop(proc)


async def _pg_database() -> str:
    import asyncpg

    name = f"sg_bench_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


async def _drop_pg(uri: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute(f'DROP DATABASE IF EXISTS "{uri.rsplit("/", 1)[1]}" WITH (FORCE)')
    await conn.close()


def _santeguard(
    db: str,
    traffic: str,
    homeserver: str,
    load: Load,
    rnd: int,
    profile: str | None,
    intake_only: bool = False,
) -> Run:
    tmp = tempfile.mkdtemp(prefix="sg-bench-")
    if db.startswith("sqlite"):
        uri = f"sqlite:///{tmp}/bench.db"
    else:
        uri = asyncio.run(_pg_database())
    sync = "normal" if db == "sqlite-normal" else "full"
    name = f"santeguard-{db}{'-intake' if intake_only else ''}-r{rnd}"
    out = os.path.join(profile, name) if profile else None
    try:
        return _run_receiver(
            serve_santeguard,
            (uri, sync, traffic, homeserver, tmp, out, intake_only),
            load,
            f"s{rnd}-",
            not intake_only,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # ~100 MB of transactions per run
        if db == "postgres":
            asyncio.run(_drop_pg(uri))


def _floor(db: str, load: Load, rnd: int) -> Run:
    tmp = tempfile.mkdtemp(prefix="sg-bench-floor-")
    uri = f"sqlite://{tmp}/floor.db" if db == "sqlite" else asyncio.run(_pg_database())
    try:
        return _run_receiver(serve_floor, (uri,), load, f"f{rnd}-", False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if db == "postgres":
            asyncio.run(_drop_pg(uri))


def _median_run(runs: list[Run], total: int) -> Run:
    order = sorted(runs, key=lambda r: total / r.elapsed)
    return order[len(order) // 2]


def _report(results: dict[str, list[Run]], total: int) -> None:
    bare, maut = results[BARE], results[MAUTRIX]
    print(
        f"{'receiver':<42} {'events/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'÷bare':>6} {'÷mautrix':>8} {'drained/s':>10} {'cpu µs/ev':>9}"
    )
    for name, runs in results.items():
        rates = [total / r.elapsed for r in runs]
        to_bare = [x / (total / b.elapsed) for x, b in zip(rates, bare, strict=True)]
        to_maut = [x / (total / m.elapsed) for x, m in zip(rates, maut, strict=True)]
        run = _median_run(runs, total)
        lat = sorted(x * 1000 for x in run.latencies)
        drained = [total / r.drained for r in runs if r.drained]
        cpu = [r.cpu * 1e6 / total for r in runs if r.cpu is not None]
        print(
            f"{name:<42} {total / run.elapsed:>9,.0f} {statistics.median(lat):>7.2f} "
            f"{quantile(lat, 0.99):>7.2f} {statistics.median(to_bare):>6.2f} "
            f"{statistics.median(to_maut):>8.2f} "
            f"{(f'{statistics.median(drained):,.0f}' if drained else '-'):>10} "
            f"{(f'{statistics.median(cpu):.1f}' if cpu else '-'):>9}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--db",
        action="append",
        choices=["sqlite", "sqlite-normal", "postgres"],
        help="repeatable; sqlite = synchronous=FULL (the default: fsync per commit), "
        "sqlite-normal = synchronous=NORMAL (survives a crash of SantéGuard, not power loss)",
    )
    ap.add_argument("--traffic", choices=["production", "plain"], default="production")
    ap.add_argument("--txns", type=int, default=1000)
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", metavar="DIR", help="profile each SantéGuard receiver into DIR")
    ap.add_argument(
        "--no-floor", action="store_true", help="skip the durable floors (bare + one INSERT)"
    )
    ap.add_argument(
        "--intake-only",
        action="store_true",
        help="diagnostic: also run SantéGuard with its dispatcher off (stored and acked, "
        "never handled), to see what the intake costs alone",
    )
    args = ap.parse_args()
    dbs = args.db or ["sqlite", "sqlite-normal", "postgres"]
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    load = _load(args.traffic, args.txns, args.events)
    total = args.txns * args.events
    print(
        f"{args.txns} transactions x {args.events} events ({args.traffic} traffic), "
        f"concurrency 1, median of {args.repeat}"
    )
    results: dict[str, list[Run]] = {}
    hs_proc, hs_port = _start(serve_homeserver, ())
    try:
        _rounds(args, dbs, load, f"http://127.0.0.1:{hs_port}", results)
    finally:
        _stop(hs_proc)
    _report(results, total)
    return 0


def _rounds(
    args: argparse.Namespace,
    dbs: list[str],
    load: Load,
    homeserver: str,
    results: dict[str, list[Run]],
) -> None:
    for rnd in range(args.repeat):
        # Interleaved rounds: each ratio is taken against the baselines of its own round,
        # which cancels the drift of a shared machine better than a ratio of medians.
        results.setdefault(BARE, []).append(_run_receiver(serve_bare, (), load, f"b{rnd}-", False))
        results.setdefault(MAUTRIX, []).append(
            _run_receiver(serve_mautrix, (), load, f"m{rnd}-", False)
        )
        floors: list[str] = [] if args.no_floor else [d for d in dbs if d != "sqlite-normal"]
        for kind in floors:
            results.setdefault(f"floor: bare + INSERT ({kind})", []).append(_floor(kind, load, rnd))
        for db in dbs:
            results.setdefault(f"SantéGuard ({db})", []).append(
                _santeguard(db, args.traffic, homeserver, load, rnd, args.profile)
            )
            if args.intake_only:
                results.setdefault(f"SantéGuard intake only ({db})", []).append(
                    _santeguard(
                        db, args.traffic, homeserver, load, rnd, args.profile, intake_only=True
                    )
                )


if __name__ == "__main__":
    sys.exit(main())
