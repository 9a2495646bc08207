"""`!sg unverify` → removal from every protected room: how long until the last kick.

One throwaway Synapse + SantéGuard (``DevStack``). A verified practitioner is a member of
``--rooms`` protected rooms; a network admin types ``!sg unverify`` in the admin room;
SantéGuard commits the unbinding with one enforcement row per room and its worker kicks
the member from each room. Each removal's delay is the kick's ``origin_server_ts``
minus the command's ``origin_server_ts``: both are the homeserver's own clock, so the
figure includes everything from the command reaching Synapse to the kick being
persisted (appservice transaction, durable queue, command, worker, Synapse's kick).

For scale, the homeserver's own share: the member is verified and put back in the
rooms, and the same kicks are sent straight to Synapse as the enforcement user,
``--concurrency`` at a time like the worker, timed from just before the first request
(loopback, same clock) to each kick's ``origin_server_ts``.

    python -m bench.unverify_removal --rooms 50 --db sqlite --db postgres
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg

from bench.common import Summary
from bridge.devtools.client import SimpleClient
from bridge.devtools.people import practitioner
from bridge.devtools.stack import DevStack
from bridge.identity.model import Verification

PG_ADMIN = os.environ.get("SANTEGUARD_TEST_PG", "postgres://postgres@127.0.0.1:5432/test")
ADMIN = "@admin:santeguard.test"
ENCRYPTED = [
    {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
]


async def _until(check: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


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


async def _protected_rooms(stack: DevStack, owner: SimpleClient, n: int) -> list[str]:
    rooms = [await owner.create_room(initial_state=ENCRYPTED) for _ in range(n)]
    for room in rooms:

        async def enforcer_in(room: str = room) -> bool:
            return stack.enforcer_mxid in await owner.joined_members(room)

        await _until(enforcer_in, 60, f"enforcement user in {room}")
    return rooms


async def _admin_room(stack: DevStack) -> tuple[SimpleClient, str]:
    """The admin's clear room with the bot, once the bot has said hello."""
    _, admin = await stack.admin()
    room = await admin.create_room(name="Administration", invite=(stack.bot_mxid,))

    async def greeted() -> bool:
        return any(ev.get("sender") == stack.bot_mxid for ev in await admin.recent_events(room))

    await _until(greeted, 60, "the bot's greeting in the admin room")
    return admin, room


async def _join_all(
    stack: DevStack, owner: SimpleClient, member: SimpleClient, rooms: list[str]
) -> None:
    sg = stack.santeguard
    assert sg is not None
    for room in rooms:
        await owner.invite(room, member.user_id)
        await member.join(room)

    async def all_known() -> bool:
        return set(rooms) <= set(await sg.room_policies.rooms_of(member.user_id))

    await _until(all_known, 120, "SantéGuard knowing every membership")


async def _leave_delays(
    stack: DevStack, owner: SimpleClient, user: str, rooms: list[str], t0: float
) -> Summary:
    """Each room's kick ``origin_server_ts`` minus ``t0`` (ms), checking it is the kick."""
    delays: list[float] = []
    for room in rooms:
        leave = await owner.request(
            "GET", f"/rooms/{quote(room)}/state/m.room.member/{quote(user)}?format=event"
        )
        assert leave["content"]["membership"] == "leave", leave
        assert leave["sender"] == stack.enforcer_mxid, leave
        delays.append(float(int(leave["origin_server_ts"]) - t0))
    return Summary(delays)


async def _direct_kicks(stack: DevStack, user: str, rooms: list[str], concurrency: int) -> float:
    """The same kicks straight to Synapse as the enforcement user; returns t0 (ms)."""
    base = stack.synapse.base_url + "/_matrix/client/v3/rooms"
    headers = {"Authorization": f"Bearer {stack.as_token}"}
    params = {"user_id": stack.enforcer_mxid}
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def kick(room: str) -> None:
            async with (
                sem,
                http.post(
                    f"{base}/{quote(room)}/kick",
                    json={"user_id": user, "reason": "bench"},
                    headers=headers,
                    params=params,
                ) as resp,
            ):
                if resp.status != 200:
                    raise RuntimeError(f"kick -> {resp.status}: {await resp.text()}")

        t0 = time.time() * 1000
        await asyncio.gather(*(kick(room) for room in rooms))
    return t0


async def measure(stack: DevStack, n_rooms: int, concurrency: int) -> dict[str, Any]:
    sg = stack.santeguard
    assert sg is not None
    _, owner = await stack.practitioner(
        f"owner{secrets.token_hex(3)}", practitioner(1, last="EXEMPLE", first="Julien")
    )
    anne = practitioner(2, last="MEMBRE", first="Anne")
    member_user, member = await stack.practitioner(f"membre{secrets.token_hex(3)}", anne)
    user = member_user.user_id
    admin, admin_room = await _admin_room(stack)
    async with owner, member, admin:
        rooms = await _protected_rooms(stack, owner, n_rooms)
        await _join_all(stack, owner, member, rooms)

        command = await admin.send_text(admin_room, f"!sg unverify {user}")

        async def all_gone() -> bool:
            joined = set((await member.request("GET", "/joined_rooms"))["joined_rooms"])
            return not joined & set(rooms)

        await _until(all_gone, 300, "removal from every room")
        sent = await admin.request("GET", f"/rooms/{quote(admin_room)}/event/{quote(command)}")
        t0 = int(sent["origin_server_ts"])
        delays = await _leave_delays(stack, owner, user, rooms, t0)
        reply_ms = float("nan")
        for ev in await admin.recent_events(admin_room):
            if ev.get("sender") == stack.bot_mxid and user in ev.get("content", {}).get("body", ""):
                reply_ms = float(int(ev["origin_server_ts"]) - t0)
                break

        # The homeserver's share: verified again, back in the rooms, kicked directly.
        now = datetime.now(UTC)
        verification = Verification.of(anne, "manual", now, timedelta(days=30))
        await sg.verifications.bind(user, verification, bound_by="bench")
        await _join_all(stack, owner, member, rooms)
        t1 = await _direct_kicks(stack, user, rooms, concurrency)
        direct = await _leave_delays(stack, owner, user, rooms, t1)
    return {"delays": delays, "reply_ms": reply_ms, "direct": direct}


async def run(kind: str, n_rooms: int, concurrency: int, keep: bool) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="sg-unverify-bench-"))
    db_uri, pg_name = await _db_uri(kind, workdir)
    stack = DevStack(workdir, db_uri=db_uri, admins=[ADMIN])
    ok = False
    try:
        await stack.start()
        result = await measure(stack, n_rooms, concurrency)
        ok = True
        return result
    finally:
        await stack.stop()
        if pg_name:
            await _drop(pg_name)
        if ok and not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not ok:
            print(f"(kept {workdir})", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--db", choices=["sqlite", "postgres"], action="append")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="direct kicks in flight (the worker's 4)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()} × {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load {load}"
    )
    print(
        f"`!sg unverify` → kick in each of {args.rooms} protected rooms "
        "(kick origin_server_ts − command origin_server_ts, ms; includes Synapse's kicks)"
    )
    print(f"{'db':<9}{'measure':<34}{'p50':>8}{'p99':>8}{'max':>8}{'min':>8}")
    for kind in args.db or ["sqlite"]:
        r = asyncio.run(run(kind, args.rooms, args.concurrency, args.keep))
        lines = (
            ("!sg unverify → kick", r["delays"]),
            (f"Synapse alone, {args.concurrency} kicks at a time", r["direct"]),
        )
        for name, d in lines:
            print(
                f"{kind:<9}{name:<34}{d.p50:>8.0f}{d.p99:>8.0f}{d.max:>8.0f}"
                f"{min(d.values_ms):>8.0f}"
            )
        print(f"{kind:<9}{'!sg unverify → bot reply':<34}{r['reply_ms']:>8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
