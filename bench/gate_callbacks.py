"""Part 1 of ``bench.gate``: callback latency under open-loop load.

A production-like mix of callbacks (``bench/gate_mix.py``: encrypted messages, joins,
invitations, membership and state events, some from unverified users) or, with
``--mix join``, ``user_may_join_room`` alone. Against the allow-all server, SantéGuard's
real gate on production defaults, and two diagnostic variants that locate the cost
(SantéGuard's server with an allow-all gate; the real policy with its audit write
skipped). Each server runs in its own process; the load generator here. Allowed (200)
and refused (403) callbacks are reported apart beside the whole: a refusal waits for its
audit entry's durable commit, by design; and the server process's CPU time per request.
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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    GATE_TOKEN,
    LoadClient,
    LoadResult,
    Summary,
    Target,
    cpu_seconds,
    install_stop,
    make_config,
    open_loop,
    run_client,
    start_server,
    stop_process,
    wait_stop,
)
from bench.gate_hosts import GATE_PATH, HOST_MAX_SECONDS, SERVER, bind_directory, serve_allow_all
from bench.gate_mix import Request, describe, mixed_requests


class _NoAudit:
    """Diagnostic only: an audit port that writes nothing."""

    async def record(self, actor: str, action: str, **_: object) -> str:
        return ""


class _GcPauses:
    """Diagnostic: the collector's pauses in a server process, by generation."""

    def __init__(self) -> None:
        self.by_gen: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.by_gen[info["generation"]].append((time.perf_counter() - self._started) * 1000)


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
    tuned: bool,
    port: int,
    parent: int,
    ready: Any,
) -> None:
    """SantéGuard itself (SQLite), every room protected, ``verified`` bound.

    ``variant``: ``real`` (the Gatekeeper as deployed), ``allow-all`` (the same server
    with an allow-all gate) or ``no-audit`` (the Gatekeeper's policy with an audit port
    that writes nothing) — the last two only to locate the cost. ``tuned``: the
    interpreter settings ``santeguard run`` applies once started (``bridge.app.runtime``).
    """
    from bench.common import AllowAllGate
    from bridge.app import SanteGuard, network_policy
    from bridge.app.runtime import tune_after_start
    from bridge.gate.decide import Gatekeeper

    # No homeserver here: silence the bot's registration retries.
    logging.getLogger("santeguard").setLevel(logging.ERROR)
    pauses = _GcPauses()

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
        if tuned:
            tune_after_start()
        profiler = cProfile.Profile() if profile_path else None
        gc.callbacks.append(pauses)
        ready.set()
        if profiler is not None:
            profiler.enable()
        try:
            await wait_stop(stop, parent, HOST_MAX_SECONDS)
        finally:
            gc.callbacks.remove(pauses)
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(str(profile_path))
            await app.stop()

    asyncio.run(main())
    Path(workdir, "gc.json").write_text(json.dumps(pauses.by_gen))


async def _load_target(
    port: int, pid: int, warm: list[Request], reqs: list[Request], rate: float
) -> tuple[LoadResult, float]:
    """One round; the result and the server's CPU seconds over the measured part."""
    client = LoadClient(port, f"{GATE_PATH}/user_may_join_room", GATE_TOKEN)
    gc.collect()
    gc.disable()  # no collector pauses in the generator: a few thousand requests, bounded
    try:
        await open_loop(client, [r.body for r in warm], rate, [r.path for r in warm])
        cpu = cpu_seconds(pid)
        result = await open_loop(client, [r.body for r in reqs], rate, [r.path for r in reqs])
        return result, cpu_seconds(pid) - cpu
    finally:
        gc.enable()
        client.close()


def _join_requests(
    n: int, verified: Sequence[str], unverified_share: float, seed: int
) -> list[Request]:
    rng = random.Random(seed)
    room = f"!bench{seed}:{SERVER}"
    out = []
    for _ in range(n):
        if rng.random() < unverified_share:
            user = f"@anon{rng.randrange(10_000)}:{SERVER}"
        else:
            user = rng.choice(verified)
        body = json.dumps({"user": user, "room": room, "is_invited": False}).encode()
        out.append(Request(f"{GATE_PATH}/user_may_join_room", body))
    return out


def _requests(
    args: argparse.Namespace, n: int, verified: Sequence[str], seed: int
) -> list[Request]:
    if args.mix == "join":
        return _join_requests(n, verified, 0.2, seed)
    return mixed_requests(n, verified, seed)


def bench_callbacks(args: argparse.Namespace, tmp: Path) -> list[str]:
    """Run part 1; return the lines to print."""
    ctx = mp.get_context("spawn")
    verified = [f"@doc{i}:{SERVER}" for i in range(args.directory)]
    gate_profile = str(Path(args.profile_dir) / "gate.prof") if args.profile_dir else None
    tuned = not args.untuned
    targets = [
        Target("allow-all aiohttp server", serve_allow_all, ()),
        Target(
            f"SantéGuard gate (SQLite, {args.directory:,} verified)",
            _serve_santeguard,
            (str(tmp / "gate"), verified, "real", gate_profile, tuned),
        ),
        Target(
            "  diag: SantéGuard server, allow-all gate",
            _serve_santeguard,
            (str(tmp / "gate-allow"), verified, "allow-all", None, tuned),
        ),
        Target(
            "  diag: SantéGuard gate, audit write skipped",
            _serve_santeguard,
            (str(tmp / "gate-noaudit"), verified, "no-audit", None, tuned),
        ),
    ]
    for t in targets[1:]:
        Path(t.args[0]).mkdir(parents=True)
    n = int(args.rate * args.seconds)
    warm = int(args.rate * args.warmup)
    runs: dict[str, list[LoadResult]] = {t.name: [] for t in targets}
    cpu: dict[str, list[float]] = {t.name: [] for t in targets}
    try:
        for t in targets:
            start_server(ctx, t)
        for rnd in range(args.rounds):
            for t in targets:
                # The same requests for every target of a round.
                warm_reqs = _requests(args, warm, verified, rnd * 10 + 100)
                reqs = _requests(args, n, verified, rnd * 10)
                result, seconds = run_client(
                    _load_target(t.port, t.proc.pid, warm_reqs, reqs, args.rate),
                    args.client_loop,
                )
                runs[t.name].append(result)
                cpu[t.name].append(seconds)
    finally:
        for t in targets:
            stop_process(t.proc)
    lines = _report(args, n, targets, runs, cpu)
    for t in targets[1:]:
        gc_file = Path(t.args[0], "gc.json")
        if gc_file.exists():
            by_gen = json.loads(gc_file.read_text())
            lines.append(
                f"   GC pauses, {t.name.strip()} (whole run): "
                + "; ".join(
                    f"gen {g}: {len(v)}× max {max(v, default=0):.2f} ms" for g, v in by_gen.items()
                )
            )
    return lines


def _median(rs: list[LoadResult], q: str, status: str | None = None) -> float:
    def values(r: LoadResult) -> list[float]:
        return r.latencies_ms if status is None else r.by_status.get(status, [])

    return statistics.median(getattr(Summary(values(r)), q) for r in rs)


def _report(
    args: argparse.Namespace,
    n: int,
    targets: list[Target],
    runs: dict[str, list[LoadResult]],
    cpu: dict[str, list[float]],
) -> list[str]:
    what = (
        "user_may_join_room alone (20 % unverified users, one protected room)"
        if args.mix == "join"
        else "production-like mix: " + describe()
    )
    lines = [
        f"1. Gate callbacks, open loop at {args.rate:,.0f} req/s for {args.seconds:g} s "
        f"({n:,} requests), median of {args.rounds} round(s); {what}",
        f"{'target':<48} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'×p50':>6} {'×p99':>6}"
        f"  allowed p50/p99 (×p99); refused p50/p99; CPU µs/req; p99 per round; "
        f"statuses; generator lag p99 ms",
    ]
    base: tuple[float, float] | None = None
    for t in targets:
        rs = runs[t.name]
        p50, p99 = _median(rs, "p50"), _median(rs, "p99")
        mx = max(Summary(r.latencies_ms).max for r in rs)
        base = base or (p50, p99)
        statuses: collections.Counter[str] = collections.Counter()
        for r in rs:
            statuses.update(r.statuses)
        ok50, ok99 = _median(rs, "p50", "200"), _median(rs, "p99", "200")
        refused = (
            f"{_median(rs, 'p50', '403'):.2f}/{_median(rs, 'p99', '403'):.2f}"
            if statuses.get("403")
            else "-"
        )
        per_req = statistics.median(cpu[t.name]) / max(1, n) * 1e6
        lag = statistics.median(Summary(r.lags_ms).p99 for r in rs)
        per_round = "/".join(f"{Summary(r.latencies_ms).p99:.2f}" for r in rs)
        lines.append(
            f"{t.name:<48} {p50:>7.2f} {p99:>7.2f} {mx:>7.1f} {p50 / base[0]:>6.2f} "
            f"{p99 / base[1]:>6.2f}  {ok50:.2f}/{ok99:.2f} (×{ok99 / base[1]:.2f}); {refused}; "
            f"{per_req:.0f}; {per_round}; {dict(sorted(statuses.items()))}; {lag:.1f}"
        )
    return lines
