"""Part 3 of ``bench.gate``: the appservice backstop's join→kick latency.

The DevStack's Synapse asks the gate about messages only, so unverified users do get
into a protected public room and only the backstop removes them. Both timestamps are
the homeserver's own (``origin_server_ts``), so no clock of ours enters the figure.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from bench.common import Summary, stop_process
from bench.gate_hosts import host_info, spawn_host, timed_join


async def _room_events(
    session: aiohttp.ClientSession, info: dict[str, Any], limit: int
) -> list[dict[str, Any]]:
    """Every event of the room, oldest first (``/messages`` backwards until its start)."""
    base = f"{info['base_url']}/_matrix/client/v3/rooms/{quote(info['room'])}/messages"
    headers = {"Authorization": f"Bearer {info['owner']}"}
    events: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(limit):
        url = f"{base}?dir=b&limit=100" + (f"&from={quote(token)}" if token else "")
        async with session.get(url, headers=headers) as resp:
            data = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"/messages -> {resp.status}: {data}")
        events.extend(data.get("chunk", []))
        token = data.get("end")
        if not data.get("chunk") or not token:
            break
    return list(reversed(events))


async def bench_backstop_async(args: argparse.Namespace, tmp: Path) -> list[str]:
    """Run part 3; return the lines to print."""
    host = spawn_host("backstop", tmp / "backstop", args.intruders, args.directory)
    try:
        info = await host_info(host)
        users = [u for u, _ in info["users"]]
        timeout = aiohttp.ClientTimeout(total=30)
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession(timeout=timeout) as session:
            start = loop.time()
            for i in range(len(users)):
                delay = start + i * args.intruder_interval - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await timed_join(session, info, i)
            # Wait (bounded) until the backstop has removed everyone.
            members_url = (
                f"{info['base_url']}/_matrix/client/v3/rooms/{quote(info['room'])}/joined_members"
            )
            headers = {"Authorization": f"Bearer {info['owner']}"}
            deadline = loop.time() + 60
            while loop.time() < deadline:
                async with session.get(members_url, headers=headers) as resp:
                    joined = set((await resp.json()).get("joined", {}))
                if not joined & set(users):
                    break
                await asyncio.sleep(0.2)
            events = await _room_events(session, info, limit=50)
    finally:
        stop_process(host.proc)
    join_ts: dict[str, int] = {}
    kick_ts: dict[str, int] = {}
    for ev in events:
        if ev.get("type") != "m.room.member" or ev.get("state_key") not in users:
            continue
        membership = (ev.get("content") or {}).get("membership")
        who = str(ev["state_key"])
        if membership == "join" and who not in join_ts:
            join_ts[who] = int(ev["origin_server_ts"])
        elif membership == "leave" and ev.get("sender") == info["enforcer"] and who not in kick_ts:
            kick_ts[who] = int(ev["origin_server_ts"])
    delays = Summary(
        [float(kick_ts[u] - join_ts[u]) for u in users if u in kick_ts and u in join_ts]
    )
    missing = len(users) - len(delays.values_ms)
    return [
        f"3. Backstop join→kick (kick origin_server_ts − join origin_server_ts), "
        f"{len(users)} unverified users joining a protected public room, one every "
        f"{args.intruder_interval * 1000:.0f} ms (joins not gated)",
        f"{'measure':<48} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}  not kicked",
        f"{'join → kick':<48} {delays.p50:>7.0f} {delays.p99:>7.0f} {delays.max:>7.0f}  {missing}",
    ]
