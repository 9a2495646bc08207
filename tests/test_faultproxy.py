"""The fault proxy (bridge/devtools/faultproxy.py) against a small upstream of our own:
it forwards faithfully (raw path, query, headers, streamed bodies both ways) and
misbehaves exactly as its rules say."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from bridge.devtools.faultproxy import FaultProxy
from bridge.devtools.testconfig import free_port

KICK = r"/_matrix/client/v3/rooms/[^/]+/kick"


class Upstream:
    """Echoes what it received; streams on demand, step by step, when the test says."""

    def __init__(self) -> None:
        self.port = free_port()
        self.first_chunk_in = asyncio.Event()  # the request body's first chunk arrived
        self.send_rest = asyncio.Event()  # the test saw the response's first chunk
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/stream", self.stream)
        app.router.add_route("*", "/upload", self.upload)
        app.router.add_route("*", "/gzip", self.gzipped)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "sha256": hashlib.sha256(body).hexdigest(),
                "length": len(body),
            },
            headers={"X-Upstream": "yes"},
        )

    async def upload(self, request: web.Request) -> web.Response:
        """Reads the body chunk by chunk; tells the test when the first one is in."""
        total = 0
        async for chunk in request.content.iter_any():
            total += len(chunk)
            self.first_chunk_in.set()
        return web.json_response({"length": total})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(b"first;")
        await self.send_rest.wait()  # only once the client got the first chunk
        await response.write(b"second")
        await response.write_eof()
        return response

    async def gzipped(self, request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(b'{"ok": true}'),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    await server.start()
    try:
        yield server
    finally:
        server.send_rest.set()
        await server.stop()


@pytest.fixture
async def proxy(upstream: Upstream) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(upstream.url) as p:
        yield p


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def _json(resp: aiohttp.ClientResponse) -> Any:
    return await resp.json(content_type=None)


async def test_forwards_method_raw_path_query_headers_and_body(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    path = "/_matrix/client/v3/rooms/%21abc%3Asante.test/kick?user_id=%40ctl%3Asante.test&x=1"
    body = b'{"user_id": "@a:sante.test", "reason": "x"}'
    async with http.post(
        URL(proxy.base_url + path, encoded=True),  # sent byte for byte, not requoted
        data=body,
        headers={
            "Authorization": "Bearer tok",
            "Content-Type": "application/json",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "must not pass",
            "X-Keep": "passes",
        },
        skip_auto_headers=("Accept-Encoding",),
    ) as resp:
        seen = await _json(resp)
        assert resp.status == 200 and resp.headers["X-Upstream"] == "yes"
    assert seen["method"] == "POST"
    assert seen["raw_path"] == path
    assert seen["headers"]["authorization"] == "Bearer tok"
    assert seen["headers"]["x-keep"] == "passes"
    assert "x-hop" not in seen["headers"]
    assert "accept-encoding" not in seen["headers"]  # nothing added on the way
    assert seen["headers"]["host"] == f"{proxy.upstream.host}:{proxy.upstream.port}"
    assert seen["sha256"] == hashlib.sha256(body).hexdigest()
    assert proxy.requests == 1


async def test_streams_request_and_response_bodies(
    upstream: Upstream, proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    """Neither body is buffered whole: each side sees the first chunk before the second
    exists (each waits on the other, so a buffering proxy would hang until the timeout)."""

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 70_000
        await asyncio.wait_for(upstream.first_chunk_in.wait(), 10)
        yield b"b" * 70_000

    async with http.put(proxy.base_url + "/upload", data=body()) as resp:
        assert (await _json(resp))["length"] == 140_000
    async with http.get(proxy.base_url + "/stream") as resp:
        first = await asyncio.wait_for(resp.content.readexactly(6), 10)
        assert first == b"first;"
        upstream.send_rest.set()
        assert await resp.content.read() == b"second"


async def test_passes_encoded_bodies_untouched(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    async with http.get(proxy.base_url + "/gzip", headers={"Accept-Encoding": "gzip"}) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert await resp.json() == {"ok": True}  # the client decompresses: sent as is


async def test_fail_answers_the_next_n_matching_requests_then_forwards(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    rule = proxy.fail("post", KICK, times=2)
    kick = proxy.base_url + "/_matrix/client/v3/rooms/%21r%3As/kick?user_id=%40c%3As"
    other = proxy.base_url + "/_matrix/client/v3/rooms/%21r%3As/invite"
    statuses = []
    for url in (kick, other, kick, kick, kick):
        async with http.post(url, json={}) as resp:
            statuses.append(resp.status)
            if resp.status == 502:
                assert "fault injected" in await resp.text()
    assert statuses == [502, 200, 502, 200, 200]
    assert rule.matched == 2 and not rule.active
    async with http.get(kick) as resp:  # the method must match too
        assert resp.status == 200


async def test_fail_with_a_matrix_error_until_cleared(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    rule = proxy.fail(
        "POST",
        KICK,
        status=403,
        body='{"errcode": "M_FORBIDDEN", "error": "no"}',
        content_type="application/json",
    )
    url = proxy.base_url + "/_matrix/client/v3/rooms/!r:s/kick"
    for _ in range(3):
        async with http.post(url, json={}) as resp:
            assert resp.status == 403 and (await resp.json())["errcode"] == "M_FORBIDDEN"
    assert rule.matched == 3 and rule.active
    proxy.clear()
    async with http.post(url, json={}) as resp:
        assert resp.status == 200
    assert rule.matched == 3


async def test_first_active_rule_decides_and_watch_counts(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    failing = proxy.fail("POST", KICK, times=1)
    watched = proxy.watch("POST", KICK)
    url = proxy.base_url + "/_matrix/client/v3/rooms/!r:s/kick"
    for expected in (502, 200, 200):
        async with http.post(url, json={}) as resp:
            assert resp.status == expected
    assert (failing.matched, watched.matched) == (1, 2)
    proxy.remove(watched)
    assert proxy.rules == [failing]


async def test_hold_then_drop_and_hold_then_forward(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    # No ``times``: aiohttp retries an idempotent request once on a dropped connection.
    dropped = proxy.hold("GET", "/slow", seconds=0.2)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(proxy.base_url + "/slow") as resp:
            await resp.read()
    assert dropped.matched >= 1
    proxy.remove(dropped)
    late = proxy.hold("GET", "/slow", seconds=0.2, then="forward")
    async with http.get(proxy.base_url + "/slow?a=b") as resp:
        assert resp.status == 200 and (await resp.json())["raw_path"] == "/slow?a=b"
    assert late.matched == 1


async def test_hold_longer_than_the_client_waits_is_a_client_timeout(
    proxy: FaultProxy, http: aiohttp.ClientSession
) -> None:
    proxy.hold("GET", "/slow", seconds=60)
    with pytest.raises(TimeoutError):
        async with http.get(
            proxy.base_url + "/slow", timeout=aiohttp.ClientTimeout(total=0.3)
        ) as resp:
            await resp.read()
    # Stopping ends the hold at once (nothing waits the 60 s).
    await asyncio.wait_for(proxy.stop(), 10)


async def test_unreachable_upstream_is_a_502(http: aiohttp.ClientSession) -> None:
    async with FaultProxy(f"http://127.0.0.1:{free_port()}") as proxy:
        async with http.get(proxy.base_url + "/_matrix/client/versions") as resp:
            assert resp.status == 502
