"""Encrypted command latency: ``!sg ping`` in an encrypted room vs a plain nio echo peer.

One throwaway Synapse + SantéGuard (``DevStack``). A practitioner's matrix-nio client
(vodozemac) measures, from just before ``room_send`` to the moment its sync delivers the
decrypted reply, for three peers in the same run, interleaved round by round:

- ``santeguard-e2ee``: ``!sg ping`` in an encrypted room (appservice transaction →
  durable queue → decrypt with the bot's device → command → encrypted reply);
- ``santeguard-clear``: the same command in a clear room (the bot's floor);
- ``nio-echo-e2ee``: a bare matrix-nio client that answers every message with an
  encrypted notice from its sync loop (the floor of any encrypted bot on this machine).

    python -m bench.e2ee_latency --rounds 30 --db sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bridge.devtools.nio_peer import NioPeer, notice_from
from bridge.devtools.stack import DevStack

PG_ADMIN = os.environ.get("SANTEGUARD_TEST_PG", "postgres://postgres@127.0.0.1:5432/test")


async def _db_uri(kind: str, workdir: Path) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'santeguard.db'}", None
    name = f"sg_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    base, _, _ = PG_ADMIN.rpartition("/")
    return f"{base}/{name}", name


async def _drop(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


async def _peer(stack: DevStack, name: str, workdir: Path) -> NioPeer:
    user = await stack.synapse.register_user(f"{name}{secrets.token_hex(3)}")
    peer = NioPeer(
        stack.synapse.base_url, user.user_id, user.device_id, user.access_token, workdir / name
    )
    await peer.start()
    return peer


async def _round(peer: NioPeer, room: str, text: str, sender: str, fragment: str) -> float:
    since = peer.mark(room)
    start = time.perf_counter()
    await peer.send_text(room, text)
    reply = await peer.wait_for(room, notice_from(sender, fragment), since=since, timeout=30)
    return (peer.received_at[reply.event_id] - start) * 1000


def _summary(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": statistics.median(samples), "p99": cuts[98], "mean": statistics.fmean(samples)}


async def run(kind: str, rounds: int, warmup: int) -> dict[str, dict[str, float]]:
    workdir = Path(tempfile.mkdtemp(prefix="sg-e2ee-bench-"))
    db_uri, pg_name = await _db_uri(kind, workdir)
    stack = DevStack(
        workdir, db_uri=db_uri, config_overrides={"gate": {"protect_by_default": False}}
    )
    await stack.start()
    peers: list[NioPeer] = []
    try:
        alice = await _peer(stack, "alice", workdir)
        echo = await _peer(stack, "echo", workdir)
        peers += [alice, echo]

        def answer(room_id: str, event: Any) -> None:
            if event.sender == alice.user_id and event.body.startswith("!echo"):
                asyncio.get_running_loop().create_task(echo.send_notice(room_id, "echo"))

        echo.on_text = answer
        bot = stack.bot_mxid
        room_e2ee = await alice.create_room((bot,), "bench e2ee")
        room_clear = await alice.create_room((bot,), "bench clear", encrypted=False)
        room_echo = await alice.create_room((echo.user_id,), "bench echo")
        await echo.join(room_echo)
        for room, member in ((room_e2ee, bot), (room_clear, bot), (room_echo, echo.user_id)):
            await alice.wait_for_member(room, member)
        cases = {
            "santeguard-e2ee": (room_e2ee, "!sg ping", bot, "pong"),
            "santeguard-clear": (room_clear, "!sg ping", bot, "pong"),
            "nio-echo-e2ee": (room_echo, "!echo", echo.user_id, "echo"),
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for i in range(warmup + rounds):
            for name, (room, text, sender, fragment) in cases.items():
                ms = await _round(alice, room, text, sender, fragment)
                if i >= warmup:
                    samples[name].append(ms)
        return {name: _summary(values) for name, values in samples.items()}
    finally:
        for peer in peers:
            await peer.stop()
        await stack.stop()
        if pg_name:
            await _drop(pg_name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--db", choices=["sqlite", "postgres"], action="append")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    print(f"{args.rounds} rounds (+{args.warmup} warm-up), send → decrypted reply, in ms")
    print(f"{'db':<9}{'peer':<18}{'p50':>8}{'p99':>8}{'mean':>8}")
    for kind in args.db or ["sqlite"]:
        results = asyncio.run(run(kind, args.rounds, args.warmup))
        for name, s in results.items():
            print(f"{kind:<9}{name:<18}{s['p50']:>8.1f}{s['p99']:>8.1f}{s['mean']:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
