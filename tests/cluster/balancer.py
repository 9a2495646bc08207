"""A round-robin HTTP balancer in front of the replicas, as a Kubernetes Service is:
Synapse's transactions and gate callbacks go to either replica; a replica that does not
answer is skipped (the request goes to the next one)."""

from __future__ import annotations

import itertools

import aiohttp
from aiohttp import web

HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


class Balancer:
    def __init__(self, port: int, backends: list[str]) -> None:
        self.port = port
        self.backends = backends
        self._next = itertools.count()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.served: dict[str, int] = dict.fromkeys(backends, 0)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        start = next(self._next)
        for i in range(len(self.backends)):
            backend = self.backends[(start + i) % len(self.backends)]
            try:
                async with self._session.request(
                    request.method,
                    backend + request.rel_url.raw_path_qs,
                    data=body,
                    headers=headers,
                ) as resp:
                    data = await resp.read()
                    self.served[backend] += 1
                    out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP}
                    return web.Response(status=resp.status, body=data, headers=out)
            except (aiohttp.ClientError, OSError):
                continue  # that replica is down: the next one
        return web.Response(status=502, text="no replica answered")
