"""Part 2 of ``bench.gate``: Synapse ``POST /join`` latency with and without the gate.

Four homeservers take turns, each joiner joining each of them in a rotating order so
drift of a shared machine spreads evenly: a Synapse with no module, one whose antispam
module calls a bare allow-all server, a DevStack with SantéGuard's gate, and the same
DevStack with an allow-all gate (the last two in child processes).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import GATE_TOKEN, Summary, Target, cpu_seconds, start_server, stop_process
from bench.gate_hosts import (
    ENCRYPTED,
    GATE_PATH,
    GATED_CALLBACKS,
    SERVER,
    host_info,
    serve_allow_all,
    spawn_host,
    timed_join,
)

JOIN_ROWS = (
    ("plain", "Synapse, no module"),
    ("module", "Synapse + antispam module → allow-all server"),
    ("gated", "Synapse + antispam → SantéGuard gate + room mod."),
    ("stack-allow", "  diag: same stack, SantéGuard allow-all gate"),
)


async def _plain_synapse(
    workdir: Path, joiners: int, callback_port: int | None = None
) -> tuple[Any, dict[str, Any]]:
    """A Synapse with no appservice, and no module unless ``callback_port`` is given
    (then synapse-http-antispam, same callbacks as the gated stack, calling the
    allow-all server there). Same users and room shape as the gated stack."""
    from bridge.devtools.client import SimpleClient
    from bridge.devtools.synapse import AntispamModule, LocalSynapse

    antispam = None
    if callback_port is not None:
        antispam = AntispamModule(
            base_url=f"http://127.0.0.1:{callback_port}{GATE_PATH}",
            token=GATE_TOKEN,
            callbacks=GATED_CALLBACKS,
        )
    synapse = LocalSynapse(workdir, server_name=SERVER, antispam=antispam)
    await synapse.start()
    try:
        owner = await synapse.register_user("owner")
        users = []
        for i in range(joiners):
            user = await synapse.register_user(f"joiner{i}")
            users.append((user.user_id, user.access_token))
        async with SimpleClient(synapse.base_url, owner.user_id, owner.access_token) as client:
            room = await client.create_room(
                preset="public_chat", initial_state=ENCRYPTED, name="bench"
            )
    except BaseException:
        await synapse.stop()
        raise
    info = {"base_url": synapse.base_url, "room": room, "users": users, "synapse_pid": synapse.pid}
    return synapse, info


async def bench_joins_async(args: argparse.Namespace, tmp: Path) -> list[str]:
    """Run part 2; return the lines to print."""
    total = args.joiners + args.join_warmup
    hosts = {
        "gated": spawn_host("gated", tmp / "gated", total, args.directory),
        "stack-allow": spawn_host("gated-allow-all", tmp / "stack-allow", total, args.directory),
    }
    callback = Target("allow-all callback server", serve_allow_all, ())
    synapses: list[Any] = []
    try:
        start_server(mp.get_context("spawn"), callback)
        infos: dict[str, dict[str, Any]] = {}
        for key, port in (("plain", None), ("module", callback.port)):
            synapse, infos[key] = await _plain_synapse(tmp / key, total, port)
            synapses.append(synapse)
        for key, host in hosts.items():
            infos[key] = await host_info(host)
        lat: dict[str, list[float]] = {key: [] for key, _ in JOIN_ROWS}
        keys = [key for key, _ in JOIN_ROWS]
        # CPU time over the measured joins, per process: each homeserver's Synapse, and
        # what answers its callbacks (the allow-all server, SantéGuard's process).
        pids = {
            "plain": {"Synapse": infos["plain"]["synapse_pid"]},
            "module": {
                "Synapse": infos["module"]["synapse_pid"],
                "callback server": callback.proc.pid,
            },
            **{
                key: {
                    "Synapse": infos[key]["synapse_pid"],
                    "SantéGuard": infos[key]["santeguard_pid"],
                }
                for key in hosts
            },
        }
        cpu: dict[str, dict[str, float]] = {}
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for i in range(total):
                if i == args.join_warmup:
                    cpu = _cpu(pids)
                # Rotate which homeserver goes first; let background work settle between.
                for key in keys[i % len(keys) :] + keys[: i % len(keys)]:
                    ms = await timed_join(session, infos[key], i)
                    if i >= args.join_warmup:
                        lat[key].append(ms)
                    await asyncio.sleep(args.join_gap)
        used = _cpu(pids)
    finally:
        for host in hosts.values():
            stop_process(host.proc)
        stop_process(callback.proc)
        for synapse in synapses:
            await synapse.stop()
    base = Summary(lat["plain"])
    lines = [
        f"2. Synapse POST /join, {args.joiners} verified users one after another "
        f"(after {args.join_warmup} warm-up joins), public encrypted room, homeservers "
        f"interleaved, {args.join_gap * 1000:.0f} ms pause between joins",
        f"{'homeserver':<48} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'×p50':>6} {'×p99':>6}"
        f"  CPU ms per join (process total over the measured joins / joins)",
    ]
    for key, label in JOIN_ROWS:
        s = Summary(lat[key])
        per_join = ", ".join(
            f"{name} {(used[key][name] - cpu[key][name]) * 1000 / max(1, args.joiners):.1f}"
            for name in used[key]
        )
        lines.append(
            f"{label:<48} {s.p50:>7.2f} {s.p99:>7.2f} {s.max:>7.1f} "
            f"{s.p50 / base.p50:>6.2f} {s.p99 / base.p99:>6.2f}  {per_join}"
        )
    return lines


def _cpu(pids: dict[str, dict[str, int]]) -> dict[str, dict[str, float]]:
    return {key: {name: cpu_seconds(pid) for name, pid in p.items()} for key, p in pids.items()}
