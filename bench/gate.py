"""The synchronous gate's cost, three ways, in one run (loopback only, bounded).

1. Callback latency under open-loop load: ``user_may_join_room`` requests scheduled at
   a fixed rate (``--rate``, default 1,000/s; each sent on time, never waiting for the
   previous one), a mix of verified and unverified users joining a protected room,
   against a bare allow-all aiohttp callback server and against SantéGuard's real gate
   (SQLite, ``--directory`` verified users). Each server runs in its own process; the
   load generator (a lean keep-alive HTTP/1.1 client, uvloop) runs here. Latency runs
   from each actual send; the generator's lag behind its schedule is printed beside
   it. Two diagnostic targets locate the cost: SantéGuard's HTTP server with an
   allow-all gate, and the real gate policy with its audit write skipped.
2. Synapse ``POST /join`` latency: a Synapse with no modules against a DevStack's
   Synapse (synapse-http-antispam → SantéGuard's gate, plus the room module, the
   appservice and its bot). In each, a verified owner creates a public encrypted room
   (protected in the gated one) and ``--joiners`` verified users join one after
   another, the homeservers taking turns. Two more homeservers in the same rotation
   locate the cost: Synapse with the antispam module calling a bare allow-all server
   (the reference's ×1.09 case), and the same DevStack with an allow-all gate.
3. Backstop join→kick latency: a DevStack whose Synapse asks the gate about messages
   only (``check_event_for_spam``), so unverified users get into a protected public
   room and only the appservice backstop removes them. Measured as the kick event's
   ``origin_server_ts`` minus the join event's (same homeserver clock), from
   ``/messages``.

The gated stacks run in child processes (SantéGuard in its own process, as deployed).

    python -m bench.gate
    python -m bench.gate --only callbacks --profile-dir /tmp/sg-prof
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import gc
import itertools
import json
import logging
import multiprocessing as mp
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import quote

import aiohttp
from aiohttp import web

from tests.helpers import GATE_TOKEN, free_port, make_config

SERVER = "santeguard.test"
GATE_PATH = "/_santeguard/antispam"
ENCRYPTED = [
    {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
]
GATED_CALLBACKS = ("user_may_invite", "user_may_join_room", "check_event_for_spam")
BACKSTOP_CALLBACKS = ("check_event_for_spam",)
HOST_MAX_SECONDS = 900  # a stack host stops by itself after this, whatever happens here
_serial = itertools.count()
T = TypeVar("T")


# -- shared helpers -------------------------------------------------------------------


def _practitioner(n: int) -> Any:
    from bridge.identity.model import Practitioner

    return Practitioner(
        idnps=f"8108888{n:05d}",
        id_kind="rpps",
        identifier=f"108888{n:05d}",
        last_name=f"BENCH{n}",
        first_name="Camille",
        civility="DR",
        profession_code="10",
        profession_label="Médecin",
        specialty_code=None,
        specialty_label=None,
        active=True,
    )


async def _bind_directory(store: Any, user_ids: Sequence[str]) -> None:
    """Bind verified practitioners to these users, as ``!sg verify`` would."""
    from bridge.identity.model import Verification

    now = datetime.now(UTC)
    for n, user_id in enumerate(user_ids):
        verification = Verification.of(_practitioner(n), "manual", now, timedelta(days=30))
        await store.bind(user_id, verification, bound_by="bench")


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


@dataclass
class Summary:
    values_ms: list[float]

    @property
    def sorted(self) -> list[float]:
        return sorted(self.values_ms)

    @property
    def p50(self) -> float:
        return statistics.median(self.values_ms) if self.values_ms else float("nan")

    @property
    def p99(self) -> float:
        return _quantile(self.sorted, 0.99)

    @property
    def max(self) -> float:
        return max(self.values_ms) if self.values_ms else float("nan")


def _install_stop(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def _wait_stop(stop: asyncio.Event, parent: int, limit: float) -> None:
    """Until SIGTERM, the parent's death, or ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not stop.is_set() and os.getppid() == parent and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


# -- part 1: callback servers (child processes) ---------------------------------------


def _serve_allow_all(port: int, parent: int, ready: Any) -> None:
    """The baseline: check the bearer token, parse the JSON body, answer {}."""

    async def handler(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {GATE_TOKEN}":
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        json.loads(await request.read())
        return web.json_response({})

    async def main() -> None:
        stop = asyncio.Event()
        _install_stop(asyncio.get_running_loop(), stop)
        app = web.Application()
        app.router.add_post(GATE_PATH + "/{callback}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await _wait_stop(stop, parent, HOST_MAX_SECONDS)
        await runner.cleanup()

    asyncio.run(main())


class _NoAudit:
    """Diagnostic only: an audit port that writes nothing."""

    async def record(
        self,
        actor: str,
        action: str,
        *,
        room_id: str | None = None,
        subject: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> str:
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
    from bridge.app import SanteGuard, network_policy
    from bridge.gate.decision import AllowAllGate
    from bridge.gate.gatekeeper import Gatekeeper

    # No homeserver here: silence the bot's registration retries.
    logging.getLogger("santeguard").setLevel(logging.ERROR)

    async def main() -> None:
        stop = asyncio.Event()
        _install_stop(asyncio.get_running_loop(), stop)
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
            assert app.matrix is not None
            late.inner = Gatekeeper(
                app.gate_store, network_policy(cfg), app.matrix, _NoAudit(), language="fr"
            )
        await _bind_directory(app.gate_store, verified)
        profiler = cProfile.Profile() if profile_path else None
        ready.set()
        if profiler is not None:
            profiler.enable()
        try:
            await _wait_stop(stop, parent, HOST_MAX_SECONDS)
        finally:
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(str(profile_path))
            await app.stop()

    asyncio.run(main())


@dataclass
class LoadResult:
    latencies_ms: list[float]  # from the moment each request is sent
    lags_ms: list[float] = field(default_factory=list)  # send time minus scheduled time
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    connections: int = 0


class _HTTPConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time (Content-Length only).

    Far cheaper per request than aiohttp's client, so the generator keeps its schedule
    at 1,000 req/s on a 2-core machine and what is measured is the server.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if len(self._buffer) < end + 4 + length:
            return
        del self._buffer[: end + 4 + length]
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(int(head[0].split(" ", 2)[1]))

    def send(self, request: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._waiter


class _LoadClient:
    """A pool of keep-alive connections: idle ones are reused, more opened on demand."""

    def __init__(self, port: int, path: str) -> None:
        self._port = port
        self._head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {GATE_TOKEN}\r\nContent-Type: application/json\r\n"
        ).encode()
        self._idle: list[_HTTPConnection] = []
        self._all: list[_HTTPConnection] = []

    async def post(self, body: bytes, timeout: float = 5) -> int:
        conn = None
        while self._idle:
            candidate = self._idle.pop()
            if not candidate.closed:
                conn = candidate
                break
        if conn is None:
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(_HTTPConnection, "127.0.0.1", self._port)
            self._all.append(conn)
        request = self._head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        status = await asyncio.wait_for(conn.send(request), timeout)
        self._idle.append(conn)
        return status

    @property
    def connections(self) -> int:
        return len(self._all)

    def close(self) -> None:
        for conn in self._all:
            if conn.transport is not None:
                conn.transport.close()


async def _open_loop(client: _LoadClient, bodies: Sequence[bytes], rate: float) -> LoadResult:
    """Send ``bodies`` at ``rate`` per second on a fixed schedule, never waiting for answers.

    Latency runs from the actual send; how late the generator was against its schedule
    is reported apart (``lags_ms``), so a generator that fell behind shows up rather
    than hiding in (or inflating) the server's figures.
    """
    result = LoadResult([])
    clock = time.perf_counter  # uvloop's loop.time() only has millisecond resolution

    async def one(due: float, body: bytes) -> None:
        sent = clock()
        result.lags_ms.append(max(0.0, sent - due) * 1000)
        try:
            status = await client.post(body)
        except (OSError, TimeoutError) as e:
            result.statuses[type(e).__name__] += 1
            return
        result.statuses[str(status)] += 1
        result.latencies_ms.append((clock() - sent) * 1000)

    tasks: list[asyncio.Task[None]] = []
    start = clock() + 0.01
    for i, body in enumerate(bodies):
        due = start + i / rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, body)))
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    result.connections = client.connections
    return result


async def _load_target(
    port: int, warm: list[bytes], bodies: list[bytes], rate: float
) -> LoadResult:
    client = _LoadClient(port, f"{GATE_PATH}/user_may_join_room")
    gc.collect()
    gc.disable()  # no collector pauses in the generator: a few thousand requests, bounded
    try:
        await _open_loop(client, warm, rate)
        return await _open_loop(client, bodies, rate)
    finally:
        gc.enable()
        client.close()


def _run_client(coro: Coroutine[Any, Any, T], loop_kind: str = "uvloop") -> T:
    """The load generator's event loop: uvloop (when installed) or asyncio's own."""
    if loop_kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(coro)
    return asyncio.run(coro)


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


@dataclass
class _Target:
    name: str
    target: Callable[..., None]
    args: tuple[Any, ...]
    port: int = 0
    proc: Any = None


def _start_server(ctx: Any, t: _Target) -> None:
    ready = ctx.Event()
    t.port = free_port()
    t.proc = ctx.Process(target=t.target, args=(*t.args, t.port, os.getpid(), ready), daemon=True)
    t.proc.start()
    deadline = time.monotonic() + 120
    while not ready.wait(0.2):
        if not t.proc.is_alive():
            raise RuntimeError(f"{t.name} exited during start-up ({t.proc.exitcode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{t.name} did not start")


def _stop_process(proc: Any, grace: float = 30) -> None:
    if proc is None or not proc.is_alive():
        return
    proc.terminate()
    proc.join(grace)
    if proc.is_alive():
        proc.kill()
        proc.join(5)


def bench_callbacks(args: argparse.Namespace, tmp: Path) -> list[str]:
    ctx = mp.get_context("spawn")
    verified = [f"@doc{i}:{SERVER}" for i in range(args.directory)]
    gate_profile = str(Path(args.profile_dir) / "gate.prof") if args.profile_dir else None
    targets = [
        _Target("allow-all aiohttp server", _serve_allow_all, ()),
        _Target(
            f"SantéGuard gate (SQLite, {args.directory:,} verified)",
            _serve_santeguard,
            (str(tmp / "gate"), verified, "real", gate_profile),
        ),
        _Target(
            "  diag: SantéGuard server, allow-all gate",
            _serve_santeguard,
            (str(tmp / "gate-allow"), verified, "allow-all", None),
        ),
        _Target(
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
            _start_server(ctx, t)
        for rnd in range(args.rounds):
            for t in targets:
                seed = rnd * 10 + targets.index(t)
                warm_bodies = _join_bodies(warm, verified, 0.2, seed + 100)
                bodies = _join_bodies(n, verified, 0.2, seed)
                runs[t.name].append(
                    _run_client(
                        _load_target(t.port, warm_bodies, bodies, args.rate), args.client_loop
                    )
                )
    finally:
        for t in targets:
            _stop_process(t.proc)
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


# -- parts 2 and 3: stacks --------------------------------------------------------------


def _host_stack(
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
    from bridge.devtools.stack import DevStack
    from bridge.gate.decision import AllowAllGate

    stop = asyncio.Event()
    _install_stop(asyncio.get_running_loop(), stop)
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
        await _bind_directory(
            stack.santeguard.gate_store, [f"@dir{i}:{SERVER}" for i in range(directory)]
        )
        owner, owner_client = await stack.practitioner("owner", _practitioner(90_000))
        users: list[tuple[str, str]] = []
        for i in range(joiners):
            if mode != "backstop":
                user, client = await stack.practitioner(f"joiner{i}", _practitioner(91_000 + i))
            else:
                user, client = await stack.user(f"anon{i}")
            await client.close()
            users.append((user.user_id, user.access_token))
        async with owner_client:
            room = await owner_client.create_room(
                preset="public_chat", initial_state=ENCRYPTED, name="bench"
            )
            deadline = time.monotonic() + 30
            while stack.bot_mxid not in await owner_client.joined_members(room):
                if time.monotonic() > deadline:
                    raise TimeoutError("the bot did not join the room")
                await asyncio.sleep(0.05)
        conn.send(
            {
                "base_url": stack.synapse.base_url,
                "room": room,
                "owner": owner.access_token,
                "users": users,
                "bot": stack.bot_mxid,
                "santeguard_pid": os.getpid(),
            }
        )
        await _wait_stop(stop, parent, HOST_MAX_SECONDS)
    finally:
        await stack.stop()


@dataclass
class _Host:
    proc: Any
    conn: Connection
    info: dict[str, Any] = field(default_factory=dict)


def _spawn_host(mode: str, workdir: Path, joiners: int, directory: int) -> _Host:
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(
        target=_host_stack,
        args=(mode, str(workdir), joiners, directory, os.getpid(), theirs),
        daemon=True,
    )
    proc.start()
    return _Host(proc, ours)


async def _host_info(host: _Host, timeout: float = 300) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    ready = await loop.run_in_executor(None, host.conn.poll, timeout)
    if not ready:
        raise TimeoutError("stack host did not report in time")
    info: dict[str, Any] = host.conn.recv()
    if "error" in info:
        raise RuntimeError(f"stack host failed: {info['error']}")
    host.info = info
    return info


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
    return synapse, {"base_url": synapse.base_url, "room": room, "users": users}


async def _timed_join(session: aiohttp.ClientSession, info: dict[str, Any], i: int) -> float:
    _, token = info["users"][i]
    url = f"{info['base_url']}/_matrix/client/v3/join/{quote(info['room'])}"
    t0 = time.perf_counter()
    async with session.post(url, json={}, headers={"Authorization": f"Bearer {token}"}) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"join {i} -> {resp.status}: {await resp.text()}")
    return (time.perf_counter() - t0) * 1000


JOIN_ROWS = (
    ("plain", "Synapse, no module"),
    ("module", "Synapse + antispam module → allow-all server"),
    ("gated", "Synapse + antispam → SantéGuard gate + room mod."),
    ("stack-allow", "  diag: same stack, SantéGuard allow-all gate"),
)


async def _bench_joins_async(args: argparse.Namespace, tmp: Path) -> list[str]:
    total = args.joiners + args.join_warmup
    hosts = {
        "gated": _spawn_host("gated", tmp / "gated", total, args.directory),
        "stack-allow": _spawn_host("gated-allow-all", tmp / "stack-allow", total, args.directory),
    }
    callback = _Target("allow-all callback server", _serve_allow_all, ())
    synapses: list[Any] = []
    try:
        _start_server(mp.get_context("spawn"), callback)
        infos: dict[str, dict[str, Any]] = {}
        for key, port in (("plain", None), ("module", callback.port)):
            synapse, infos[key] = await _plain_synapse(tmp / key, total, port)
            synapses.append(synapse)
        for key, host in hosts.items():
            infos[key] = await _host_info(host)
        lat: dict[str, list[float]] = {key: [] for key, _ in JOIN_ROWS}
        keys = [key for key, _ in JOIN_ROWS]
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for i in range(total):
                # Rotate which homeserver goes first; let background work settle between.
                for key in keys[i % len(keys) :] + keys[: i % len(keys)]:
                    ms = await _timed_join(session, infos[key], i)
                    if i >= args.join_warmup:
                        lat[key].append(ms)
                    await asyncio.sleep(args.join_gap)
    finally:
        for host in hosts.values():
            _stop_process(host.proc)
        _stop_process(callback.proc)
        for synapse in synapses:
            await synapse.stop()
    base = Summary(lat["plain"])
    lines = [
        f"2. Synapse POST /join, {args.joiners} verified users one after another "
        f"(after {args.join_warmup} warm-up joins), public encrypted room, homeservers "
        f"interleaved, {args.join_gap * 1000:.0f} ms pause between joins",
        f"{'homeserver':<48} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'×p50':>6} {'×p99':>6}",
    ]
    for key, label in JOIN_ROWS:
        s = Summary(lat[key])
        lines.append(
            f"{label:<48} {s.p50:>7.2f} {s.p99:>7.2f} {s.max:>7.1f} "
            f"{s.p50 / base.p50:>6.2f} {s.p99 / base.p99:>6.2f}"
        )
    return lines


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


async def _bench_backstop_async(args: argparse.Namespace, tmp: Path) -> list[str]:
    host = _spawn_host("backstop", tmp / "backstop", args.intruders, args.directory)
    try:
        info = await _host_info(host)
        users = [u for u, _ in info["users"]]
        timeout = aiohttp.ClientTimeout(total=30)
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession(timeout=timeout) as session:
            start = loop.time()
            for i in range(len(users)):
                delay = start + i * args.intruder_interval - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await _timed_join(session, info, i)
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
        _stop_process(host.proc)
    join_ts: dict[str, int] = {}
    kick_ts: dict[str, int] = {}
    for ev in events:
        if ev.get("type") != "m.room.member" or ev.get("state_key") not in users:
            continue
        membership = (ev.get("content") or {}).get("membership")
        who = str(ev["state_key"])
        if membership == "join" and who not in join_ts:
            join_ts[who] = int(ev["origin_server_ts"])
        elif membership == "leave" and ev.get("sender") == info["bot"] and who not in kick_ts:
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


# -- main ---------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", choices=["callbacks", "joins", "backstop"], action="append")
    ap.add_argument("--rate", type=float, default=1000.0, help="callbacks per second")
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per target")
    ap.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per target")
    ap.add_argument("--rounds", type=int, default=3, help="callback rounds (median reported)")
    ap.add_argument(
        "--client-loop", choices=["uvloop", "asyncio"], default="uvloop", help="load generator"
    )
    ap.add_argument("--directory", type=int, default=1000, help="verified users in the gate DB")
    ap.add_argument("--joiners", type=int, default=100)
    ap.add_argument("--join-warmup", type=int, default=5)
    ap.add_argument("--join-gap", type=float, default=0.05, help="pause between joins (s)")
    ap.add_argument("--intruders", type=int, default=50)
    ap.add_argument("--intruder-interval", type=float, default=0.3, help="seconds")
    ap.add_argument("--profile-dir", help="write a cProfile of the gate process here")
    args = ap.parse_args()
    if not (1 <= args.rate <= 5000 and 0 < args.seconds <= 30 and 1 <= args.rounds <= 10):
        ap.error("keep the load bounded: rate 1..5000/s, seconds ≤ 30, rounds ≤ 10")
    if args.joiners + args.join_warmup > 500 or args.intruders > 200:
        ap.error("keep the run bounded: ≤ 500 joiners, ≤ 200 intruders")
    if args.profile_dir:
        Path(args.profile_dir).mkdir(parents=True, exist_ok=True)
    parts = args.only or ["callbacks", "joins", "backstop"]
    tmp = Path(tempfile.mkdtemp(prefix="sg-bench-gate-"))
    started = time.monotonic()
    try:
        for part in parts:
            t0 = time.monotonic()
            load = os.getloadavg()[0]
            if part == "callbacks":
                lines = bench_callbacks(args, tmp / f"cb{next(_serial)}")
            elif part == "joins":
                lines = asyncio.run(_bench_joins_async(args, tmp / f"joins{next(_serial)}"))
            else:
                lines = asyncio.run(_bench_backstop_async(args, tmp / f"backstop{next(_serial)}"))
            print(
                "\n".join(lines) + f"\n   ({time.monotonic() - t0:.0f} s; load average "
                f"{load:.2f} before, {os.getloadavg()[0]:.2f} after)\n",
                flush=True,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
