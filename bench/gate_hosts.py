"""What the gate benchmarks measure against, shared by their parts.

The allow-all callback server (the baseline of parts 1 and 2), and DevStack hosts:
child processes each running a Synapse + SantéGuard stack with its users and room,
reporting the details back over a pipe (parts 2 and 3). SantéGuard runs in its own
process, as deployed, so the load generator does not share its event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from bench.common import GATE_TOKEN, install_stop, wait_stop

SERVER = "santeguard.test"
GATE_PATH = "/_santeguard/antispam"
ENCRYPTED = [
    {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
]
GATED_CALLBACKS = ("user_may_invite", "user_may_join_room", "check_event_for_spam")
BACKSTOP_CALLBACKS = ("check_event_for_spam",)
HOST_MAX_SECONDS = 900  # a stack host stops by itself after this, whatever happens here


def practitioner(n: int) -> Any:
    from bridge.devtools.people import practitioner as made_up

    return made_up(888_800_000 + n, last=f"BENCH{n}", first="Camille")


async def bind_directory(store: Any, user_ids: Sequence[str]) -> None:
    """Bind verified practitioners to these users, as ``!sg verify`` would."""
    from bridge.identity.model import Verification

    now = datetime.now(UTC)
    for n, user_id in enumerate(user_ids):
        verification = Verification.of(practitioner(n), "manual", now, timedelta(days=30))
        await store.bind(user_id, verification, bound_by="bench")


def serve_allow_all(port: int, parent: int, ready: Any) -> None:
    """The baseline: check the bearer token, parse the JSON body, answer {}."""

    async def handler(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {GATE_TOKEN}":
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        json.loads(await request.read())
        return web.json_response({})

    async def main() -> None:
        stop = asyncio.Event()
        install_stop(asyncio.get_running_loop(), stop)
        app = web.Application()
        app.router.add_post(GATE_PATH + "/{callback}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await wait_stop(stop, parent, HOST_MAX_SECONDS)
        await runner.cleanup()

    asyncio.run(main())


# -- DevStack hosts (child processes) ---------------------------------------------------


def host_stack(
    mode: str, workdir: str, joiners: int, directory: int, parent: int, conn: Connection
) -> None:
    """Child process: a DevStack, its users and room; details sent back over ``conn``."""
    try:
        asyncio.run(_host_stack_async(mode, Path(workdir), joiners, directory, parent, conn))
    except Exception as e:  # reported to the parent, which fails the run
        with contextlib.suppress(Exception):
            conn.send({"error": f"{type(e).__name__}: {e}"})
        raise


async def _host_stack_async(
    mode: str, workdir: Path, joiners: int, directory: int, parent: int, conn: Connection
) -> None:
    from bench.common import AllowAllGate
    from bridge.app.runtime import tune_after_start
    from bridge.devtools.stack import DevStack

    stop = asyncio.Event()
    install_stop(asyncio.get_running_loop(), stop)
    # SantéGuard starts before Synapse: its first bot registrations fail, as expected.
    sg_log = logging.getLogger("santeguard")
    sg_log.setLevel(logging.ERROR)
    stack = DevStack(
        workdir,
        db_uri=f"sqlite:///{workdir / 'santeguard.db'}",
        admins=[f"@admin:{SERVER}"],
        gate=AllowAllGate() if mode == "gated-allow-all" else None,
        antispam_callbacks=BACKSTOP_CALLBACKS if mode == "backstop" else GATED_CALLBACKS,
    )
    await stack.start()
    sg_log.setLevel(logging.WARNING)
    try:
        assert stack.santeguard is not None
        await bind_directory(
            stack.santeguard.verifications, [f"@dir{i}:{SERVER}" for i in range(directory)]
        )
        owner, owner_client = await stack.practitioner("owner", practitioner(90_000))
        users: list[tuple[str, str]] = []
        for i in range(joiners):
            if mode != "backstop":
                user, client = await stack.practitioner(f"joiner{i}", practitioner(91_000 + i))
            else:
                user, client = await stack.user(f"anon{i}")
            await client.close()
            users.append((user.user_id, user.access_token))
        async with owner_client:
            room = await owner_client.create_room(
                preset="public_chat", initial_state=ENCRYPTED, name="bench"
            )
            deadline = time.monotonic() + 30
            # The room module puts the enforcement user (no device) in a protected room,
            # not the bot: it is the one who removes members.
            while stack.enforcer_mxid not in await owner_client.joined_members(room):
                if time.monotonic() > deadline:
                    raise TimeoutError("the enforcement user did not join the room")
                await asyncio.sleep(0.05)
        tune_after_start()  # as `santeguard run` does once started
        conn.send(
            {
                "base_url": stack.synapse.base_url,
                "room": room,
                "owner": owner.access_token,
                "users": users,
                "enforcer": stack.enforcer_mxid,
                "santeguard_pid": os.getpid(),
                "synapse_pid": stack.synapse.pid,
            }
        )
        await wait_stop(stop, parent, HOST_MAX_SECONDS)
    finally:
        await stack.stop()


@dataclass
class Host:
    proc: Any
    conn: Connection
    info: dict[str, Any] = field(default_factory=dict)


def spawn_host(mode: str, workdir: Path, joiners: int, directory: int) -> Host:
    """Start a stack host; ``mode`` is ``gated``, ``gated-allow-all`` or ``backstop``."""
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(
        target=host_stack,
        args=(mode, str(workdir), joiners, directory, os.getpid(), theirs),
        daemon=True,
    )
    proc.start()
    return Host(proc, ours)


async def host_info(host: Host, timeout: float = 300) -> dict[str, Any]:
    """Wait (in a thread, not blocking the loop) for the host's report; raise its error."""
    loop = asyncio.get_running_loop()
    ready = await loop.run_in_executor(None, host.conn.poll, timeout)
    if not ready:
        raise TimeoutError("stack host did not report in time")
    info: dict[str, Any] = host.conn.recv()
    if "error" in info:
        raise RuntimeError(f"stack host failed: {info['error']}")
    host.info = info
    return info


async def timed_join(session: aiohttp.ClientSession, info: dict[str, Any], i: int) -> float:
    """User ``i`` joins the room; the ``POST /join`` round trip in ms."""
    _, token = info["users"][i]
    url = f"{info['base_url']}/_matrix/client/v3/join/{quote(info['room'])}"
    t0 = time.perf_counter()
    async with session.post(url, json={}, headers={"Authorization": f"Bearer {token}"}) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"join {i} -> {resp.status}: {await resp.text()}")
    return (time.perf_counter() - t0) * 1000
