"""Helpers shared by the benchmarks: configuration, summaries, load, child processes.

The benchmarks are run from a checkout but must not depend on the test suite: the config
builder and tokens they share with it come from :mod:`bridge.devtools.testconfig`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import statistics
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from bridge.core.antispam import GateDecision
from bridge.devtools.testconfig import GATE_TOKEN, HS_TOKEN, free_port, make_config

__all__ = [
    "GATE_TOKEN",
    "HS_TOKEN",
    "HTTPConnection",
    "LoadClient",
    "LoadResult",
    "Summary",
    "Target",
    "cpu_seconds",
    "free_port",
    "install_stop",
    "make_config",
    "open_loop",
    "quantile",
    "run_client",
    "start_server",
    "stop_process",
    "wait_stop",
]

T = TypeVar("T")


# -- summaries --------------------------------------------------------------------------


def quantile(sorted_values: Sequence[float], q: float) -> float:
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
        return quantile(self.sorted, 0.99)

    @property
    def max(self) -> float:
        return max(self.values_ms) if self.values_ms else float("nan")


# -- stop handling (in child processes) -------------------------------------------------


def install_stop(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def wait_stop(stop: asyncio.Event, parent: int, limit: float) -> None:
    """Until SIGTERM, the parent's death, or ``limit`` seconds: no orphan outlives a run."""
    deadline = time.monotonic() + limit
    while not stop.is_set() and os.getppid() == parent and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- raw HTTP load ------------------------------------------------------------------------


@dataclass
class LoadResult:
    latencies_ms: list[float]  # from the moment each request is sent
    lags_ms: list[float] = field(default_factory=list)  # send time minus scheduled time
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    connections: int = 0
    # Latencies by HTTP status (e.g. a gate's allowed 200s apart from its refused 403s).
    by_status: dict[str, list[float]] = field(default_factory=dict)


class HTTPConnection(asyncio.Protocol):
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


class LoadClient:
    """A pool of keep-alive connections: idle ones are reused, more opened on demand."""

    def __init__(self, port: int, path: str, token: str) -> None:
        self._port = port
        self._head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        ).encode()
        self._token = token
        self._heads: dict[str, bytes] = {path: self._head}
        self._idle: list[HTTPConnection] = []
        self._all: list[HTTPConnection] = []

    def _head_for(self, path: str) -> bytes:
        head = self._heads.get(path)
        if head is None:
            head = self._heads[path] = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self._port}\r\n"
                f"Authorization: Bearer {self._token}\r\nContent-Type: application/json\r\n"
            ).encode()
        return head

    async def post(self, body: bytes, timeout: float = 5, path: str | None = None) -> int:
        """POST ``body`` to the client's path, or to ``path`` (a mix of endpoints)."""
        conn = None
        while self._idle:
            candidate = self._idle.pop()
            if not candidate.closed:
                conn = candidate
                break
        if conn is None:
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(HTTPConnection, "127.0.0.1", self._port)
            self._all.append(conn)
        head = self._head if path is None else self._head_for(path)
        request = head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
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


async def open_loop(
    client: LoadClient,
    bodies: Sequence[bytes],
    rate: float,
    paths: Sequence[str] | None = None,
) -> LoadResult:
    """Send ``bodies`` at ``rate`` per second on a fixed schedule, never waiting for answers.

    ``paths``, if given, is each body's path (same length as ``bodies``).

    Latency runs from the actual send; how late the generator was against its schedule
    is reported apart (``lags_ms``), so a generator that fell behind shows up rather
    than hiding in (or inflating) the server's figures.
    """
    result = LoadResult([])
    clock = time.perf_counter  # uvloop's loop.time() only has millisecond resolution

    async def one(due: float, body: bytes, path: str | None) -> None:
        sent = clock()
        result.lags_ms.append(max(0.0, sent - due) * 1000)
        try:
            status = await client.post(body, path=path)
        except (OSError, TimeoutError) as e:
            result.statuses[type(e).__name__] += 1
            return
        ms = (clock() - sent) * 1000
        result.statuses[str(status)] += 1
        result.latencies_ms.append(ms)
        result.by_status.setdefault(str(status), []).append(ms)

    tasks: list[asyncio.Task[None]] = []
    start = clock() + 0.01
    for i, body in enumerate(bodies):
        due = start + i / rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, body, paths[i] if paths else None)))
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    result.connections = client.connections
    return result


def run_client(coro: Coroutine[Any, Any, T], loop_kind: str = "uvloop") -> T:
    """The load generator's event loop: uvloop (when installed) or asyncio's own."""
    if loop_kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(coro)
    return asyncio.run(coro)


# -- server processes ---------------------------------------------------------------------


@dataclass
class Target:
    """A server run in a child process: ``target(*args, port, parent_pid, ready_event)``."""

    name: str
    target: Callable[..., None]
    args: tuple[Any, ...]
    port: int = 0
    proc: Any = None


def start_server(ctx: Any, t: Target) -> None:
    """Start ``t`` on a free port and wait until it sets its ready event."""
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


def stop_process(proc: Any, grace: float = 30) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; nothing if already gone."""
    if proc is None or not proc.is_alive():
        return
    proc.terminate()
    proc.join(grace)
    if proc.is_alive():
        proc.kill()
        proc.join(5)


class AllowAllGate:
    """A gate that allows every callback: the baseline the benchmarks compare the real
    gate to. It lives here, not in bridge/: nothing in SantéGuard may allow by default."""

    async def decide(self, callback: str, payload: dict[str, Any]) -> GateDecision:
        return GateDecision.allowed()
