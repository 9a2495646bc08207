"""Part 1 of ``bench.gate``: ``user_may_join_room`` callback latency under open-loop load.

Against the allow-all server, SantéGuard's real gate, and two diagnostic variants that
locate the cost (SantéGuard's server with an allow-all gate; the real policy with its
audit write skipped). Each server runs in its own process; the load generator here.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import gc
import json
import logging
import multiprocessing as mp
import random
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    GATE_TOKEN,
    LoadClient,
    LoadResult,
    Summary,
    Target,
    install_stop,
    make_config,
    open_loop,
    run_client,
    start_server,
    stop_process,
    wait_stop,
)
from bench.gate_hosts import GATE_PATH, HOST_MAX_SECONDS, SERVER, bind_directory, serve_allow_all


class _NoAudit:
    """Diagnostic only: an audit port that writes nothing."""

    async def record(self, actor: str, action: str, **_: object) -> str:
        return ""


class _LateGate:
    """Forwards to a gate built once SantéGuard has started (the server keeps this one)."""

    def __init__(self) -> None:
        self.inner: Any = None

    async def decide(self, callback: str, payload: dict[str, Any]) -> Any:
        return await self.inner.decide(callback, payload)


def _serve_santeguard(
    workdir: str,
    verified: list[str],
    variant: str,
    profile_path: str | None,
    port: int,
    parent: int,
    ready: Any,
) -> None:
    """SantéGuard itself (SQLite), every room protected, ``verified`` bound.

    ``variant``: ``real`` (the Gatekeeper as deployed), ``allow-all`` (the same server
    with an allow-all gate) or ``no-audit`` (the Gatekeeper's policy with an audit port
    that writes nothing) — the last two only to locate the cost.
    """
    from bench.common import AllowAllGate
    from bridge.app import SanteGuard, network_policy
    from bridge.gate.decide import Gatekeeper

    # No homeserver here: silence the bot's registration retries.
    logging.getLogger("santeguard").setLevel(logging.ERROR)

    async def main() -> None:
        stop = asyncio.Event()
        install_stop(asyncio.get_running_loop(), stop)
        cfg = make_config(
            f"sqlite:///{workdir}/santeguard.db",
            appservice={"port": port, "address": f"http://127.0.0.1:{port}"},
            gate={"protect_by_default": True},
            encryption={"enabled": False, "store_path": f"{workdir}/crypto"},
            logging={"level": "ERROR"},
        )
        late = _LateGate()
        gate: Any = {"real": None, "allow-all": AllowAllGate(), "no-audit": late}[variant]
        app = SanteGuard(cfg, gate=gate)
        await app.start()
        if variant == "no-audit":
            late.inner = Gatekeeper(
                app.room_policies,
                app.verifications,
                network_policy(cfg),
                _NoAudit(),
                app.translator,
                language="fr",
            )
        await bind_directory(app.verifications, verified)
        profiler = cProfile.Profile() if profile_path else None
        ready.set()
        if profiler is not None:
            profiler.enable()
        try:
            await wait_stop(stop, parent, HOST_MAX_SECONDS)
        finally:
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(str(profile_path))
            await app.stop()

    asyncio.run(main())


async def _load_target(
    port: int, warm: list[bytes], bodies: list[bytes], rate: float
) -> LoadResult:
    client = LoadClient(port, f"{GATE_PATH}/user_may_join_room", GATE_TOKEN)
    gc.collect()
    gc.disable()  # no collector pauses in the generator: a few thousand requests, bounded
    try:
        await open_loop(client, warm, rate)
        return await open_loop(client, bodies, rate)
    finally:
        gc.enable()
        client.close()


def _join_bodies(
    n: int, verified: Sequence[str], unverified_share: float, seed: int
) -> list[bytes]:
    rng = random.Random(seed)
    room = f"!bench{seed}:{SERVER}"
    out = []
    for _ in range(n):
        if rng.random() < unverified_share:
            user = f"@anon{rng.randrange(10_000)}:{SERVER}"
        else:
            user = rng.choice(verified)
        out.append(json.dumps({"user": user, "room": room, "is_invited": False}).encode())
    return out


def bench_callbacks(args: argparse.Namespace, tmp: Path) -> list[str]:
    """Run part 1; return the lines to print."""
    ctx = mp.get_context("spawn")
    verified = [f"@doc{i}:{SERVER}" for i in range(args.directory)]
    gate_profile = str(Path(args.profile_dir) / "gate.prof") if args.profile_dir else None
    targets = [
        Target("allow-all aiohttp server", serve_allow_all, ()),
        Target(
            f"SantéGuard gate (SQLite, {args.directory:,} verified)",
            _serve_santeguard,
            (str(tmp / "gate"), verified, "real", gate_profile),
        ),
        Target(
            "  diag: SantéGuard server, allow-all gate",
            _serve_santeguard,
            (str(tmp / "gate-allow"), verified, "allow-all", None),
        ),
        Target(
            "  diag: SantéGuard gate, audit write skipped",
            _serve_santeguard,
            (str(tmp / "gate-noaudit"), verified, "no-audit", None),
        ),
    ]
    for t in targets[1:]:
        Path(t.args[0]).mkdir(parents=True)
    n = int(args.rate * args.seconds)
    warm = int(args.rate * args.warmup)
    runs: dict[str, list[LoadResult]] = {t.name: [] for t in targets}
    try:
        for t in targets:
            start_server(ctx, t)
        for rnd in range(args.rounds):
            for t in targets:
                seed = rnd * 10 + targets.index(t)
                warm_bodies = _join_bodies(warm, verified, 0.2, seed + 100)
                bodies = _join_bodies(n, verified, 0.2, seed)
                runs[t.name].append(
                    run_client(
                        _load_target(t.port, warm_bodies, bodies, args.rate), args.client_loop
                    )
                )
    finally:
        for t in targets:
            stop_process(t.proc)
    return _report(args, n, targets, runs)


def _report(
    args: argparse.Namespace, n: int, targets: list[Target], runs: dict[str, list[LoadResult]]
) -> list[str]:
    lines = [
        f"1. user_may_join_room callback, open loop at {args.rate:,.0f} req/s for "
        f"{args.seconds:g} s ({n:,} requests, 20 % unverified users, protected room), "
        f"median of {args.rounds} round(s)",
        f"{'target':<48} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'×p50':>6} {'×p99':>6}"
        f"  p99 per round; statuses; generator lag p99 ms",
    ]
    base: tuple[float, float] | None = None
    for t in targets:
        rs = runs[t.name]
        p50 = statistics.median(Summary(r.latencies_ms).p50 for r in rs)
        p99 = statistics.median(Summary(r.latencies_ms).p99 for r in rs)
        mx = max(Summary(r.latencies_ms).max for r in rs)
        base = base or (p50, p99)
        statuses: collections.Counter[str] = collections.Counter()
        for r in rs:
            statuses.update(r.statuses)
        lag = statistics.median(Summary(r.lags_ms).p99 for r in rs)
        per_round = "/".join(f"{Summary(r.latencies_ms).p99:.1f}" for r in rs)
        lines.append(
            f"{t.name:<48} {p50:>7.2f} {p99:>7.2f} {mx:>7.1f} {p50 / base[0]:>6.2f} "
            f"{p99 / base[1]:>6.2f}  {per_round}; {dict(sorted(statuses.items()))}; {lag:.1f}"
        )
    return lines
