"""Slow and idle clients cannot hold SantéGuard's connections (bridge/spine/guard.py).

A real SantéGuard (SQLite) with short limits, raw sockets against it: unfinished headers,
a stalled body and an idle keep-alive connection are closed for their reason (counted in
metrics), the connection cap closes what is beyond it at once and gives the descriptors
back, and meanwhile normal requests — a keep-alive connection used steadily, a large body
that keeps coming slowly, a handler slower than every timeout — are served whole.
The figures at the default limits (3,000 idle connections) come from
``python -m tests.security.slow_clients_figures``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bridge.app import SanteGuard
from bridge.spine.guard import GuardLimits, start_guarded
from tests.helpers import HS_TOKEN, free_port, make_config

TXN = "/_matrix/app/v1/transactions/"
CAP = 40
LIMITS = {
    "header_timeout_seconds": 1.0,
    "body_timeout_seconds": 1.5,
    "keepalive_seconds": 1.0,
    "max_connections": CAP,
}
WAIT = 15.0  # a generous bound for anything that must happen within a timeout or two

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture(scope="module")
async def app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SanteGuard]:
    work = tmp_path_factory.mktemp("slow")
    cfg = make_config(
        f"sqlite:///{work / 'sg.db'}",
        appservice=LIMITS,
        encryption={"store_path": str(work / "crypto")},  # not in the working directory
    )
    santeguard = SanteGuard(cfg)
    await santeguard.start()
    try:
        yield santeguard
    finally:
        await santeguard.stop()


def closed(app: SanteGuard, reason: str) -> float:
    value = app.metrics.registry.get_sample_value(
        "santeguard_http_connections_closed_total", {"reason": reason}
    )
    return value or 0.0


async def connect(app: SanteGuard) -> Stream:
    return await asyncio.open_connection("127.0.0.1", app.config.appservice.port)


def head(path: str, length: int, *, keep_alive: bool = True) -> bytes:
    return (
        f"PUT {path} HTTP/1.1\r\nHost: sg\r\nAuthorization: Bearer {HS_TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    ).encode()


async def read_until_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes (fails after ``WAIT``)."""
    return await asyncio.wait_for(reader.read(), timeout=WAIT)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One response on a keep-alive connection: status and body."""
    head_bytes = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=WAIT)
    lines = head_bytes.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    length = int({k.lower(): v for k, v in fields.items()}.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), timeout=WAIT)
    return int(lines[0].split(" ")[1]), body


async def transaction(app: SanteGuard, txn_id: str) -> int:
    """A normal transaction on its own connection; its status."""
    reader, writer = await connect(app)
    body = b'{"events": []}'
    writer.write(head(TXN + txn_id, len(body), keep_alive=False) + body)
    try:
        status, _ = await read_response(reader)
    finally:
        writer.close()
    return status


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- each slow client is closed for its reason --------------------------------------------


async def test_unfinished_headers_are_answered_408_and_closed(app: SanteGuard) -> None:
    before = closed(app, "header_timeout")
    reader, writer = await connect(app)
    writer.write(f"PUT {TXN}h1 HTTP/1.1\r\nHost: sg\r\nAuthorization: Bea".encode())
    silent, _ = await connect(app)  # connects, never sends a byte
    assert (await transaction(app, "meanwhile-h")) == 200  # the server serves meanwhile
    reply = await read_until_eof(reader)
    assert reply.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b'"error": "request not received in time"' in reply
    assert (await read_until_eof(silent)).startswith(b"HTTP/1.1 408")
    assert closed(app, "header_timeout") == before + 2
    writer.close()


async def test_a_stalled_body_is_closed_and_nothing_is_stored(app: SanteGuard) -> None:
    before = closed(app, "body_timeout")
    reader, writer = await connect(app)
    writer.write(head(TXN + "stalled", 1000) + b'{"events": [')
    reply = await read_until_eof(reader)
    assert reply.startswith(b"HTTP/1.1 408")
    assert closed(app, "body_timeout") == before + 1
    assert await app.db.fetchval("SELECT COUNT(*) FROM txn WHERE txn_id = 'stalled'") == 0
    writer.close()


async def test_an_idle_keepalive_connection_is_closed_not_a_busy_one(app: SanteGuard) -> None:
    before = closed(app, "idle")
    reader, writer = await connect(app)
    body = b'{"events": []}'
    # Like the homeserver's connection: used steadily, across several keep-alive periods.
    for n in range(5):
        writer.write(head(f"{TXN}busy{n}", len(body)) + body)
        assert await read_response(reader) == (200, b"{}")
        await asyncio.sleep(0.4)
    assert closed(app, "idle") == before
    assert await read_until_eof(reader) == b""  # then idle: closed, without a word
    assert closed(app, "idle") == before + 1
    writer.close()


async def test_a_large_body_that_keeps_coming_passes(app: SanteGuard) -> None:
    pad = "x" * (200 * 1024)  # within max_body_bytes (256 KiB in tests)
    body = json.dumps({"events": [], "padding": pad}).encode()
    reader, writer = await connect(app)
    writer.write(head(TXN + "slow-large", len(body), keep_alive=False))
    pieces = 8  # over ~3 s: twice body_timeout_seconds, never a second without a byte
    step = -(-len(body) // pieces)
    for i in range(pieces):
        writer.write(body[i * step : (i + 1) * step])
        await writer.drain()
        await asyncio.sleep(0.4)
    assert await read_response(reader) == (200, b"{}")
    assert await app.db.fetchval("SELECT COUNT(*) FROM txn WHERE txn_id = 'slow-large'") == 1
    writer.close()


# -- the cap ------------------------------------------------------------------------------


async def test_at_the_cap_the_oldest_silent_connections_make_way(app: SanteGuard) -> None:
    assert app.http_guard.open_connections == 0
    baseline = open_fds()
    before = closed(app, "evicted")
    streams = [await connect(app) for _ in range(CAP + 50)]
    # The 50 oldest are pushed out at once (408), long before any timeout; CAP stay open.
    pushed = await asyncio.gather(*(read_until_eof(r) for r, _ in streams[:50]))
    assert all(reply.startswith(b"HTTP/1.1 408") for reply in pushed)
    assert closed(app, "evicted") == before + 50
    assert app.http_guard.open_connections == CAP
    # This process holds both ends: CAP + 50 client sockets and CAP server ones.
    assert open_fds() - baseline <= (CAP + 50) + CAP + 5
    # A normal request is served meanwhile: it too pushes the oldest silent one out.
    assert (await transaction(app, "at-cap")) == 200
    held = await asyncio.gather(*(read_until_eof(r) for r, _ in streams[50:]))
    assert all(reply.startswith(b"HTTP/1.1 408") for reply in held)
    for _, writer in streams:
        writer.close()
    await asyncio.sleep(0.1)
    assert app.http_guard.open_connections == 0
    assert open_fds() <= baseline + 5


async def test_at_the_cap_with_every_connection_in_a_request_new_ones_are_refused(
    app: SanteGuard,
) -> None:
    before = closed(app, "over_capacity")
    streams = [await connect(app) for _ in range(CAP)]
    for n, (_, writer) in enumerate(streams):
        writer.write(head(f"{TXN}full{n}", 1000) + b"{")  # each in its body
    await asyncio.sleep(0.3)
    reader, writer = await connect(app)
    assert await read_until_eof(reader) == b""  # closed as soon as accepted, no reply
    assert closed(app, "over_capacity") == before + 1
    assert app.http_guard.open_connections == CAP
    writer.close()
    held = await asyncio.gather(*(read_until_eof(r) for r, _ in streams))
    assert all(reply.startswith(b"HTTP/1.1 408") for reply in held)
    for _, w in streams:
        w.close()


# -- a request that has arrived is never cut ----------------------------------------------


async def test_a_handler_slower_than_every_timeout_is_answered() -> None:
    """The homeserver's transaction may take long to commit: no timer applies then."""

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(2.5)  # beyond header, body and keep-alive timeouts
        return web.json_response({"slow": True})

    app = web.Application()
    app.router.add_put("/slow", slow)
    port = free_port()
    limits = GuardLimits(
        header_timeout=0.5, body_timeout=0.5, keepalive=0.5, max_connections=5,
        max_body_bytes=1024,
    )  # fmt: skip
    runner, guard = await start_guarded(app, limits, "127.0.0.1", port)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"PUT /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        assert await read_response(reader) == (200, b'{"slow": true}')
        assert await read_until_eof(reader) == b""  # then idle, closed
        writer.close()
    finally:
        await runner.cleanup()
    assert guard.open_connections == 0
