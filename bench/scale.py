"""Scale: SantéGuard with 1,000 and 10,000 rooms (10 users per room), each figure
measured beside its baseline in the same run, and how each grows with the rooms.

For each size: a fake homeserver (``bench.scale_fakehs``: a real Synapse cannot be given
10,000 rooms in reasonable time) answers from the synthetic network; a first SantéGuard
imports an extract and binds the verified users (``Binder.verify``), then receives the
rooms as appservice transactions and handles them; it stops, and a second one is
started on that database and measured: start-up (process start → ``/ready`` 200, the
snapshots loaded), RSS, gate callback p99 at a fixed open-loop rate against the
allow-all server, transaction ingest against a bare handler, the reconcile sweep and
the retention audit, then RSS again. Start-up and RSS have an empty database's as
baseline. Each server runs in its own process; SQLite.

    .venv/bin/python -m bench.scale --rooms 1000 --rooms 10000
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import (
    GATE_TOKEN,
    HS_TOKEN,
    LoadClient,
    Summary,
    Target,
    free_port,
    install_stop,
    open_loop,
    run_client,
    start_server,
    stop_process,
    wait_stop,
)
from bench.gate_hosts import GATE_PATH, serve_allow_all
from bench.scale_host import HOST_MAX_SECONDS, host_main, rss_mb, send_transactions
from bench.scale_net import Network

USERS_PER_ROOM = 10


# -- child processes ----------------------------------------------------------------------


def _serve_fake(net: Network, port: int, parent: int, ready: Any) -> None:
    from bench.scale_fakehs import serve

    async def main() -> None:
        stop = asyncio.Event()
        install_stop(asyncio.get_running_loop(), stop)
        server = asyncio.create_task(serve(net, port, stop))
        await asyncio.sleep(0.2)
        ready.set()
        await wait_stop(stop, parent, HOST_MAX_SECONDS)
        stop.set()
        await server

    asyncio.run(main())


def _serve_bare(port: int, parent: int, ready: Any) -> None:
    """The ingest baseline: check the token, parse the body, answer {}."""

    async def handler(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {HS_TOKEN}":
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        json.loads(await request.read())
        return web.json_response({})

    async def main() -> None:
        stop = asyncio.Event()
        install_stop(asyncio.get_running_loop(), stop)
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_put("/_matrix/app/v1/transactions/{txn}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await wait_stop(stop, parent, HOST_MAX_SECONDS)
        await runner.cleanup()

    asyncio.run(main())


@dataclass
class Host:
    """A SantéGuard child process (``bench.scale_host``) and its command pipe."""

    proc: Any
    conn: Any
    port: int
    started: dict[str, Any] = field(default_factory=dict)

    def ask(self, cmd: str, timeout: float = HOST_MAX_SECONDS) -> dict[str, Any]:
        self.conn.send(cmd)
        return self.wait(timeout)

    def wait(self, timeout: float) -> dict[str, Any]:
        if not self.conn.poll(timeout):
            raise TimeoutError("SantéGuard host did not answer")
        answer: dict[str, Any] = self.conn.recv()
        if "error" in answer:
            raise RuntimeError(f"SantéGuard host failed: {answer['error']}")
        return answer

    def stop(self) -> None:
        if self.proc.is_alive():
            self.conn.send("stop")  # a clean stop: the database closed, its temp dir gone
            self.proc.join(60)
        stop_process(self.proc)


def spawn_host(net: Network, db_uri: str, homeserver: str) -> tuple[Host, float]:
    """Start a SantéGuard host; return it and its start-up time (process start →
    ``/ready`` 200; the snapshots are loaded before the server listens)."""
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    port = free_port()
    t0 = time.perf_counter()
    proc = ctx.Process(
        target=host_main, args=(net, db_uri, homeserver, port, os.getpid(), theirs), daemon=True
    )
    proc.start()
    host = Host(proc, ours, port)
    seconds = asyncio.run(_wait_ready(port, proc, t0))
    host.started = host.wait(60)
    return host, seconds


async def _wait_ready(port: int, proc: Any, t0: float) -> float:
    async with aiohttp.ClientSession() as session:
        while True:
            if not proc.is_alive():
                raise RuntimeError(f"SantéGuard exited during start-up ({proc.exitcode})")
            try:
                async with session.get(f"http://127.0.0.1:{port}/ready") as resp:
                    if resp.status == 200:
                        return time.perf_counter() - t0
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.02)


# -- loads -----------------------------------------------------------------------------


def _join_bodies(net: Network, n: int, seed: int) -> list[bytes]:
    """``user_may_join_room`` for random rooms: 80 % a verified user, 20 % an unverified."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        room = rng.randrange(net.rooms)
        if rng.random() < 0.2:
            user = net.unverified_user(rng.randrange(net.users))
        else:
            user = net.user(rng.randrange(net.verified))
        body = {"user": user, "room": net.room_id(room), "is_invited": False}
        out.append(json.dumps(body).encode())
    return out


async def _gate_load(port: int, warm: list[bytes], bodies: list[bytes], rate: float) -> Summary:
    client = LoadClient(port, f"{GATE_PATH}/user_may_join_room", GATE_TOKEN)
    try:
        await open_loop(client, warm, rate)
        result = await open_loop(client, bodies, rate)
    finally:
        client.close()
    bad = {k: v for k, v in result.statuses.items() if k not in ("200", "403")}
    if bad:
        raise RuntimeError(f"gate load: unexpected answers {bad}")
    return Summary(result.latencies_ms)


def _ingest(port: int, bodies: list[bytes], prefix: str) -> float:
    """Events/s acknowledged, one transaction in flight."""
    events = sum(len(json.loads(b)["events"]) for b in bodies)
    t0 = time.perf_counter()
    asyncio.run(send_transactions(port, bodies, prefix))
    return events / (time.perf_counter() - t0)


def ingest_round(args: argparse.Namespace, net: Network, port: int, bare: int, tag: str) -> float:
    """One round: the bare handler, then SantéGuard, same bodies; SantéGuard's ratio."""
    traffic = net.traffic(args.txns, args.events, tag=tag)
    base = _ingest(bare, traffic, f"b{tag}-")
    ours = _ingest(port, traffic, f"s{tag}-")
    print(f"  ingest round {tag}: {ours:,.0f} / {base:,.0f} events/s", flush=True)
    return ours / base


# -- one size --------------------------------------------------------------------------


def measure(args: argparse.Namespace, rooms: int, tmp: Path, fig: dict[str, Any]) -> None:
    ctx = mp.get_context("spawn")
    net = Network(rooms, rooms * USERS_PER_ROOM, epoch_ms=int(time.time() * 1000))
    fake = Target("fake homeserver", _serve_fake, (net,))
    start_server(ctx, fake)
    homeserver = f"http://127.0.0.1:{fake.port}"
    uri = f"sqlite:///{tmp / f'scale{rooms}.db'}"
    hosts: list[Host] = []
    try:
        setup, _ = spawn_host(net, uri, homeserver)
        hosts.append(setup)
        fig["bind_s"] = setup.ask("bind")["seconds"]
        txns = list(net.transactions())
        t0 = time.perf_counter()
        asyncio.run(send_transactions(setup.port, txns, "load"))
        fig["load_ack_s"] = time.perf_counter() - t0
        fig["load_events"] = sum(len(net.events(i)) for i in range(rooms))
        fig["load_handled_s"] = time.perf_counter() - t0 + setup.ask("drain")["seconds"]
        setup.stop()
        print(f"  {rooms:,} rooms loaded: {fig}", flush=True)

        host, fig["startup_s"] = spawn_host(net, uri, homeserver)
        hosts.append(host)
        fig["snapshots"] = host.started
        time.sleep(2)  # the bot's registration and first jobs, as after any start
        fig["rss_start_mb"] = rss_mb(host.proc.pid)

        allow = Target("allow-all", serve_allow_all, ())
        bare = Target("bare", _serve_bare, ())
        start_server(ctx, allow)
        start_server(ctx, bare)
        try:
            n, warm = int(args.rate * args.seconds), int(args.rate)
            gate: dict[str, list[float]] = {"allow": [], "sg": []}
            ingest: list[float] = []
            for rnd in range(args.rounds):
                for key, port in (("allow", allow.port), ("sg", host.port)):
                    bodies = _join_bodies(net, n, seed=rnd)
                    s = run_client(_gate_load(port, _join_bodies(net, warm, 99), bodies, args.rate))
                    gate[key].append(s.p99)
                print(
                    f"  gate round {rnd}: p99 {gate['allow'][-1]:.2f} (allow-all) / "
                    f"{gate['sg'][-1]:.2f} ms",
                    flush=True,
                )
                ingest.append(ingest_round(args, net, host.port, bare.port, f"{rooms}r{rnd}"))
        finally:
            stop_process(allow.proc)
            stop_process(bare.proc)
        fig["gate_p99_allow_ms"] = statistics.median(gate["allow"])
        fig["gate_p99_sg_ms"] = statistics.median(gate["sg"])
        fig["ingest_ratio"] = statistics.median(ingest)
        host.ask("drain")
        # Twice (the sweep is idempotent): the faster pass is the figure, the slower one
        # mostly measures the other jobs sharing the machine.
        sweeps = [host.ask("sweep") for _ in range(2)]
        fig["sweep_s"] = min(s["seconds"] for s in sweeps)
        fig["sweep_planned"] = sum(s["planned"] for s in sweeps)
        print(f"  sweeps: {[round(s['seconds'], 2) for s in sweeps]} s", flush=True)
        audit = host.ask("audit")
        fig["audit_s"], fig["audit_verdict"] = audit["seconds"], audit["verdict"]
        fig["audit_rooms"], fig["audit_purged"] = audit["rooms"], audit["purged"]
        after = host.ask("counts")
        fig["rss_after_mb"], fig["rss_peak_mb"] = after["rss_mb"], after["peak_mb"]
    finally:
        for h in hosts:
            h.stop()
        stop_process(fake.proc)


def baseline(args: argparse.Namespace, tmp: Path, rooms: int) -> dict[str, float]:
    """Start-up, RSS and ingest of SantéGuard on an empty database, same run (the
    ingest's traffic addressed to the rooms of a ``rooms``-room network it never saw)."""
    ctx = mp.get_context("spawn")
    net = Network(0, 0, epoch_ms=0)
    fake = Target("fake homeserver", _serve_fake, (net,))
    bare = Target("bare", _serve_bare, ())
    start_server(ctx, fake)
    start_server(ctx, bare)
    try:
        uri = f"sqlite:///{tmp / 'empty.db'}"
        first, _ = spawn_host(net, uri, f"http://127.0.0.1:{fake.port}")
        first.stop()  # the schema is created: the next start is a restart, as measured
        host, seconds = spawn_host(net, uri, f"http://127.0.0.1:{fake.port}")
        time.sleep(2)
        rss = rss_mb(host.proc.pid)
        traffic = Network(rooms, rooms * USERS_PER_ROOM, epoch_ms=int(time.time() * 1000))
        ratios = [
            ingest_round(args, traffic, host.port, bare.port, f"0r{rnd}")
            for rnd in range(args.rounds)
        ]
        host.stop()
    finally:
        stop_process(fake.proc)
        stop_process(bare.proc)
    return {"startup_s": seconds, "rss_start_mb": rss, "ingest_ratio": statistics.median(ratios)}


# -- report ----------------------------------------------------------------------------


def report(
    args: argparse.Namespace, base: dict[str, float], figs: dict[int, dict[str, Any]]
) -> str:
    sizes = sorted(figs)
    rows = [
        ("start-up, process start → /ready 200 (s)", "startup_s", base["startup_s"], "{:.2f}"),
        ("RSS after start-up (MB)", "rss_start_mb", base["rss_start_mb"], "{:.0f}"),
        ("RSS after the load (MB)", "rss_after_mb", None, "{:.0f}"),
        ("peak RSS (MB)", "rss_peak_mb", None, "{:.0f}"),
        ("gate p99, allow-all server (ms)", "gate_p99_allow_ms", None, "{:.2f}"),
        ("gate p99, SantéGuard (ms)", "gate_p99_sg_ms", None, "{:.2f}"),
        ("gate p99 ratio SantéGuard / allow-all", "gate_ratio", None, "{:.2f}"),
        ("ingest ratio SantéGuard / bare handler", "ingest_ratio", base["ingest_ratio"], "{:.2f}"),
        ("reconcile sweep (s, faster of 2)", "sweep_s", None, "{:.2f}"),
        ("retention audit (s)", "audit_s", None, "{:.2f}"),
        ("loading: binding the users (s)", "bind_s", None, "{:.1f}"),
        ("loading: rooms' transactions acknowledged (s)", "load_ack_s", None, "{:.1f}"),
        ("loading: rooms' events handled (s)", "load_handled_s", None, "{:.1f}"),
    ]
    for f in figs.values():
        f["gate_ratio"] = f["gate_p99_sg_ms"] / f["gate_p99_allow_ms"]
    head = "| figure | empty DB | " + " | ".join(
        f"{r:,} rooms / {r * USERS_PER_ROOM:,} users" for r in sizes
    )
    growth = len(sizes) == 2
    lines = [
        head + (f" | ×{sizes[1] // max(1, sizes[0])} rooms: ratio |" if growth else " |"),
        "|---" * (2 + len(sizes) + growth) + "|",
    ]
    for label, key, b, fmt in rows:
        cells = [fmt.format(b) if b is not None else "—"]
        cells += [fmt.format(figs[s][key]) for s in sizes]
        if growth:
            cells.append(f"{figs[sizes[1]][key] / figs[sizes[0]][key]:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    notes = [
        "",
        f"Gate: user_may_join_room, open loop at {args.rate:,.0f} req/s for {args.seconds:g} s "
        f"(20 % unverified users, random rooms), median of {args.rounds} rounds' p99, allow-all "
        f"server measured in the same rounds. Ingest: {args.txns} transactions × {args.events} "
        "m.room.encrypted events into the network's rooms, one in flight, events/s over a bare "
        "aiohttp handler's in the same round (median ratio).",
    ]
    for s in sizes:
        f = figs[s]
        notes.append(
            f"{s:,} rooms: snapshots after restart {f['snapshots']}; {f['load_events']:,} events "
            f"loaded; sweep planned {f['sweep_planned']} removals; audit {f['audit_verdict']} "
            f"over {f['audit_rooms']:,} rooms, {f['audit_purged']:,} expired messages "
            "proven purged."
        )
    return "\n".join(lines + notes)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rooms", type=int, action="append", help="repeatable (10 users per room)")
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--txns", type=int, default=200)
    ap.add_argument("--events", type=int, default=50)
    args = ap.parse_args()
    sizes = args.rooms or [1000, 10000]
    print(f"bench.scale {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, sizes {sizes}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sg-scale-") as tmp:
        base = baseline(args, Path(tmp), min(sizes))
        print(f"  empty database: {base}", flush=True)
        figs: dict[int, dict[str, Any]] = {}
        for rooms in sizes:
            figs[rooms] = {}
            measure(args, rooms, Path(tmp), figs[rooms])
    print(report(args, base, figs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
