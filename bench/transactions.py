"""Transaction ingest: SantéGuard's durable endpoint vs a bare aiohttp handler, same run.

Each receiver runs in its own process; this process is the homeserver stand-in and, like
Synapse, keeps one transaction in flight (concurrency 1). Prints events/s, ack p50/p99
and the ratio to the bare handler, median of ``--repeat`` rounds.

    python -m bench.transactions --db sqlite --db postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import secrets
import statistics
import sys
import tempfile
import time
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import HS_TOKEN, free_port, make_config

PG_ADMIN = os.environ.get("SANTEGUARD_TEST_PG", "postgres://postgres@127.0.0.1:5432/test")


def _event(room: int, n: int) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": f"${secrets.token_urlsafe(32)}",
        "room_id": f"!room{room}:bench.test",
        "sender": f"@user{n % 7}:bench.test",
        "origin_server_ts": 1_700_000_000_000 + n,
        "unsigned": {"age": 12},
        "content": {"msgtype": "m.text", "body": "Patient vu ce matin, compte rendu à suivre " * 5},
    }


def _bodies(txns: int, events: int) -> list[bytes]:
    return [
        json.dumps({"events": [_event(t % 10, t * events + i) for i in range(events)]}).encode()
        for t in range(txns)
    ]


def _serve_bare(port: int, ready: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {HS_TOKEN}":
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        json.loads(await request.read())
        return web.json_response({})

    async def main() -> None:
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_put("/_matrix/app/v1/transactions/{txn}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def _serve_santeguard(db_uri: str, synchronous: str, port: int, ready: Any) -> None:
    from bridge.app import SanteGuard

    async def main() -> None:
        cfg = make_config(
            db_uri,
            appservice={
                "port": port,
                "address": f"http://127.0.0.1:{port}",
                "max_body_bytes": 10 * 1024 * 1024,
            },
            database={"sqlite_synchronous": synchronous},
            logging={"level": "ERROR"},
        )
        app = SanteGuard(cfg)
        await app.start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


async def _drive(port: int, bodies: list[bytes], prefix: str) -> tuple[float, list[float]]:
    url = f"http://127.0.0.1:{port}/_matrix/app/v1/transactions/"
    headers = {"Authorization": f"Bearer {HS_TOKEN}", "Content-Type": "application/json"}
    lat: list[float] = []
    async with aiohttp.ClientSession() as s:
        for i in range(min(20, len(bodies))):  # warm-up
            async with s.put(f"{url}{prefix}w{i}", data=bodies[i], headers=headers) as r:
                await r.read()
        start = time.perf_counter()
        for i, body in enumerate(bodies):
            t0 = time.perf_counter()
            async with s.put(f"{url}{prefix}{i}", data=body, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"receiver answered {r.status}")
            lat.append(time.perf_counter() - t0)
        return time.perf_counter() - start, lat


def _run_receiver(
    target: Any, args: tuple[Any, ...], bodies: list[bytes], prefix: str
) -> tuple[float, list[float]]:
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    port = free_port()
    proc = ctx.Process(target=target, args=(*args, port, ready), daemon=True)
    proc.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("receiver did not start")
        return asyncio.run(_drive(port, bodies, prefix))
    finally:
        proc.terminate()
        proc.join(10)


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


def _fmt(
    name: str, events: int, elapsed: float, lat: list[float], base: float | None
) -> tuple[str, float]:
    rate = events / elapsed
    lat_ms = sorted(x * 1000 for x in lat)
    p50 = statistics.median(lat_ms)
    p99 = lat_ms[int(len(lat_ms) * 0.99) - 1]
    ratio = f"{rate / base:.2f}" if base else "1.00"
    return f"{name:<34} {rate:>10,.0f} {p50:>8.2f} {p99:>8.2f} {ratio:>7}", rate


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--db",
        action="append",
        choices=["sqlite", "sqlite-normal", "postgres"],
        help="repeatable; sqlite = synchronous=FULL (fsync per commit), sqlite-normal = "
        "synchronous=NORMAL (survives process crashes, not power loss)",
    )
    ap.add_argument("--txns", type=int, default=1000)
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    dbs = args.db or ["sqlite", "sqlite-normal", "postgres"]
    bodies = _bodies(args.txns, args.events)
    total = args.txns * args.events
    print(
        f"{args.txns} transactions x {args.events} events, concurrency 1, median of {args.repeat}"
    )
    print(f"{'receiver':<34} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>7}")
    results: dict[str, list[tuple[float, list[float]]]] = {}
    for rnd in range(args.repeat):
        results.setdefault("bare aiohttp (parse + ack)", []).append(
            _run_receiver(_serve_bare, (), bodies, f"b{rnd}-")
        )
        for db in dbs:
            if db.startswith("sqlite"):
                tmp = tempfile.mkdtemp(prefix="sg-bench-")
                uri = f"sqlite:///{tmp}/bench.db"
            else:
                uri = asyncio.run(_pg_database())
            sync = "normal" if db == "sqlite-normal" else "full"
            try:
                results.setdefault(f"SantéGuard durable ({db})", []).append(
                    _run_receiver(_serve_santeguard, (uri, sync), bodies, f"s{rnd}-")
                )
            finally:
                if db == "postgres":
                    asyncio.run(_drop_pg(uri))
    # Rounds are interleaved (bare, then each receiver), so each receiver's ratio is taken
    # against the bare handler of the same round, and the median ratio is reported: this
    # cancels the drift of a shared machine better than a ratio of medians.
    bare_runs = results["bare aiohttp (parse + ack)"]
    for name, runs in results.items():
        rates = [total / elapsed for elapsed, _ in runs]
        ratios = [r / (total / b[0]) for r, b in zip(rates, bare_runs, strict=True)]
        order = sorted(range(len(runs)), key=lambda i: rates[i])
        elapsed, lat = runs[order[len(order) // 2]]
        line, _ = _fmt(name, total, elapsed, lat, None)
        print(f"{line[:-7]} {statistics.median(ratios):>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
