"""A fault-injecting reverse proxy, for tests that need the homeserver to misbehave.

It listens on loopback and forwards every request to an upstream (the dev Synapse):
method, raw path and query string, headers (hop-by-hop ones aside) and the body, both
ways streamed chunk by chunk, so ``/sync`` long polls and uploads pass through as they
are. Rules chosen at run time, checked in the order they were added (the first active
one that matches a request decides), make it misbehave instead::

    kicks = proxy.fail("POST", r"/_matrix/client/v3/rooms/[^/]+/kick", times=3)
    proxy.hold("GET", r"/_matrix/client/v3/sync", seconds=5)  # then drop the connection
    proxy.watch("PUT", r".*/send/.*")  # forward, only count
    ...
    assert kicks.matched == 3
    proxy.clear()

A rule matches on the method (``re.fullmatch``, case-insensitive) and the decoded path
without the query string (``re.fullmatch``); ``times`` bounds how many requests it
takes (``None``: until removed); ``matched`` counts them. An unreachable upstream is a
502, as from a real gateway. Nothing here logs a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from bridge.devtools.testconfig import free_port

__all__ = ["FaultProxy", "Rule"]

log = logging.getLogger("santeguard.devtools.faultproxy")

# RFC 9110 §7.6.1: meaningful for one connection only, never forwarded.
_HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
    )
)
_CHUNK = 64 * 1024

Action = Literal["status", "hold", "pass"]


@dataclass(eq=False)
class Rule:
    """One fault (or watch); ``matched`` counts the requests it took."""

    method: re.Pattern[str]
    path: re.Pattern[str]
    action: Action
    times: int | None = None
    status: int = 502
    body: bytes = b""
    content_type: str = "text/plain"
    seconds: float = 0.0
    then: Literal["drop", "forward"] = "drop"
    matched: int = field(default=0, init=False)

    @property
    def active(self) -> bool:
        return self.times is None or self.matched < self.times

    def matches(self, method: str, path: str) -> bool:
        return bool(self.method.fullmatch(method) and self.path.fullmatch(path))


def _forwardable(headers: CIMultiDictProxy[str], *, drop: tuple[str, ...] = ()) -> CIMultiDict[str]:
    """The end-to-end headers: hop-by-hop ones, those ``Connection`` names and ``drop`` out."""
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", [])
        for token in value.split(",")
    }
    skip = _HOP_BY_HOP | named | {d.lower() for d in drop}
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in headers.items():
        if key.lower() not in skip:
            out.add(key, value)
    return out


class FaultProxy:
    """A reverse proxy to ``upstream`` on ``host:port`` (a free port by default)."""

    def __init__(self, upstream: str, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.upstream = URL(upstream.rstrip("/"))
        self.host = host
        self.port = port or free_port()
        self.rules: list[Rule] = []
        self.requests = 0  # every request received, faulted or not
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closing = asyncio.Event()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def retarget(self, upstream: str) -> None:
        """Forward to ``upstream`` from now on (e.g. a homeserver restarted elsewhere)."""
        self.upstream = URL(upstream.rstrip("/"))

    # -- rules ----------------------------------------------------------------------------

    def _add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    @staticmethod
    def _patterns(method: str, path: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
        return re.compile(method, re.IGNORECASE), re.compile(path)

    def fail(
        self,
        method: str,
        path: str,
        *,
        status: int = 502,
        times: int | None = None,
        body: bytes | str | None = None,
        content_type: str = "text/plain",
    ) -> Rule:
        """Answer ``status`` (with ``body``) to the next ``times`` matching requests."""
        if body is None:
            body = f"{status} {_reason(status)} (fault injected by the test proxy)"
        data = body.encode("utf-8") if isinstance(body, str) else body
        return self._add(
            Rule(
                *self._patterns(method, path),
                "status",
                times=times,
                status=status,
                body=data,
                content_type=content_type,
            )
        )

    def hold(
        self,
        method: str,
        path: str,
        *,
        seconds: float,
        then: Literal["drop", "forward"] = "drop",
        times: int | None = None,
    ) -> Rule:
        """Hold matching requests ``seconds``, then close the connection without an
        answer (``drop``: the client sees a disconnect, or its own timeout first) or
        forward them late (``forward``). aiohttp clients retry an idempotent request
        once on a dropped connection: a ``times=1`` drop of a GET goes unnoticed."""
        return self._add(
            Rule(*self._patterns(method, path), "hold", times=times, seconds=seconds, then=then)
        )

    def watch(self, method: str, path: str, *, times: int | None = None) -> Rule:
        """Forward matching requests untouched, and count them."""
        return self._add(Rule(*self._patterns(method, path), "pass", times=times))

    def remove(self, rule: Rule) -> None:
        with contextlib.suppress(ValueError):
            self.rules.remove(rule)

    def clear(self) -> None:
        """Remove every rule: from now on every request is forwarded."""
        self.rules.clear()

    def _rule_for(self, method: str, path: str) -> Rule | None:
        for rule in self.rules:
            if rule.active and rule.matches(method, path):
                rule.matched += 1
                return rule
        return None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            return
        self._closing.clear()
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.debug("Fault proxy %s -> %s", self.base_url, self.upstream)

    async def stop(self) -> None:
        self._closing.set()  # ends every hold at once
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- requests ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        rule = self._rule_for(request.method, request.path)
        if rule is not None:
            log.debug("Fault proxy: %s %s -> %s", request.method, request.path, rule.action)
            if rule.action == "status":
                return web.Response(
                    status=rule.status, body=rule.body, content_type=rule.content_type
                )
            if rule.action == "hold":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), rule.seconds)
                if rule.then == "drop" or self._closing.is_set():
                    return _drop(request)
        return await self._forward(request)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        url = URL(str(self.upstream) + request.raw_path, encoded=True)
        headers = _forwardable(request.headers, drop=("Host",))
        data = request.content if request.body_exists else None
        try:
            upstream = await self._session.request(
                request.method,
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
                skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            )
        except (aiohttp.ClientError, OSError) as e:
            log.debug("Fault proxy: upstream unreachable: %s", type(e).__name__)
            return web.Response(status=502, text="502 Bad Gateway (upstream unreachable)")
        async with upstream:
            response = web.StreamResponse(
                status=upstream.status,
                reason=upstream.reason,
                headers=_forwardable(upstream.headers),
            )
            try:
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(_CHUNK):
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionResetError:
                pass  # the client went away (a killed process, a client timeout)
            except (aiohttp.ClientError, OSError):
                _drop(request)  # upstream broke mid-body: so does the answer
        return response


def _drop(request: web.Request) -> web.StreamResponse:
    """Close the client's connection without an answer (aiohttp then finds the
    connection gone when it writes the returned response, and lets it go quietly)."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=502)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
