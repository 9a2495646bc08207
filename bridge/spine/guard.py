"""Read timeouts and a connection cap for the HTTP server the homeserver talks to.

Why: aiohttp's server has no timeout on reading a request's headers or body, and its
keep-alive default is an hour. A client that opens connections and sends nothing, half
its headers, or half a body held them (and one file descriptor each) for as long as it
liked: 3,000 such connections held 3,011 descriptors, and the gate, served by the same
process, would have run out of them. This module closes

- a connection whose request headers are not complete ``header_timeout`` seconds after
  their first byte (or after the connection opened, for the first request): ``408``;
- a request whose body makes no progress for ``body_timeout`` seconds, or has not
  arrived in full by ``body_timeout`` plus its length at ``MIN_BODY_RATE``: ``408``.
  A large body that keeps coming, even slowly, passes;
- a keep-alive connection idle for ``keepalive`` seconds between requests;
- beyond ``max_connections`` open at once (the homeserver keeps a few; an attacker is the
  one who needs thousands), the oldest connection that holds no request (waiting for
  headers, or idle) makes way for the new one; if all are in a request, the new one is
  closed as soon as accepted. A flood of silent connections thus never locks the
  homeserver out: its new connection pushes the oldest silent one out.

A request whose body has arrived is never cut: while its handler runs (a transaction
being committed, a gate decision) no timer applies, so the homeserver's long-lived
keep-alive connection is never broken mid-request.

How: :class:`GuardedSite` listens like ``aiohttp.web.TCPSite`` but wraps each of the
server's protocols (``runner.server()``, an aiohttp ``RequestHandler``) in a
:class:`_GuardedConnection` that forwards everything to it and watches the bytes;
:meth:`ConnectionGuard.middleware` tells it when a request's headers were parsed and
when its handler is done. Only aiohttp's public interfaces are used.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger("santeguard.http.guard")

# A body may take ``body_timeout`` plus its length at this rate (bytes/s) in all: a
# client trickling one byte just before each ``body_timeout`` still gets cut.
MIN_BODY_RATE = 8 * 1024
_TIMEOUT_BODY = b'{"errcode": "M_UNKNOWN", "error": "request not received in time"}'
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


@dataclass(frozen=True)
class GuardLimits:
    """The limits (``appservice.*`` in the configuration)."""

    header_timeout: float
    body_timeout: float
    keepalive: float
    max_connections: int
    max_body_bytes: int


class Phase(enum.Enum):
    HEADERS = "header_timeout"  # waiting for (the rest of) a request's headers
    BODY = "body_timeout"  # the handler runs, its body has not all arrived
    HANDLING = "handling"  # the whole request is in: no timer
    IDLE = "idle"  # between requests on a keep-alive connection


class _GuardedConnection(asyncio.Protocol):
    """One accepted connection: forwards to aiohttp's handler, enforces the deadlines."""

    def __init__(self, guard: ConnectionGuard, make_inner: Callable[[], RequestHandler]) -> None:
        self._guard = guard
        self._make_inner = make_inner
        self.inner: RequestHandler | None = None  # None: refused over the cap
        self.transport: asyncio.Transport | None = None
        self.phase = Phase.HEADERS
        self.request: web.BaseRequest | None = None
        self._deadline = 0.0
        self._body_cap = 0.0
        self._tail = b""  # the last bytes of a request head so far, to find its end
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol, forwarded ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self._guard.admit(self):
            transport.abort()  # nothing to flush: the descriptor goes now
            return
        self.inner = self._make_inner()
        self._guard.register(self.inner, self)
        self.inner.connection_made(transport)
        self._set_deadline(self._guard.now() + self._guard.limits.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        now = self._guard.now()
        if self.phase is Phase.IDLE and data:
            self.phase = Phase.HEADERS
            self._tail = b""
            self._set_deadline(now + self._guard.limits.header_timeout)
        self.inner.data_received(data)
        if self.phase is Phase.HEADERS:
            # The end of the headers, seen here rather than when the handler starts (a
            # loop turn later): from then on the connection holds a request and is never
            # pushed out at the cap. Bytes after it are the body's (or pipelined).
            seen = self._tail + data
            if b"\r\n\r\n" in seen:
                limits = self._guard.limits
                self._body_cap = now + limits.body_timeout + limits.max_body_bytes / MIN_BODY_RATE
                self.phase = Phase.BODY
                self.body_progress(now)
            else:
                self._tail = seen[-3:]
        elif self.phase is Phase.BODY:
            self.body_progress(now)

    def eof_received(self) -> None:
        if self.inner is not None:
            self.inner.eof_received()

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_timer()
        if self.inner is not None:
            self._guard.release(self)
            self.inner.connection_lost(exc)
        self.inner = None
        self.request = None

    # -- phases -------------------------------------------------------------------------

    @property
    def evictable(self) -> bool:
        """Holds no request: may make way for a new connection at the cap."""
        return self.inner is not None and self.phase in (Phase.HEADERS, Phase.IDLE)

    def evict(self) -> None:
        self._close("evicted")

    def request_started(self, request: web.BaseRequest) -> None:
        """The request's headers are parsed and its handler starts."""
        self.request = request
        now = self._guard.now()
        limits = self._guard.limits
        length = request.content_length or limits.max_body_bytes
        self._body_cap = now + limits.body_timeout + length / MIN_BODY_RATE
        self.phase = Phase.BODY
        self.body_progress(now)

    def body_progress(self, now: float) -> None:
        request = self.request  # None: headers seen, the handler not started yet
        if request is not None and request.content.is_eof():
            # No deadline while handling; the timer stays armed (it ignores this phase)
            # so that the next phase's deadline, usually later, needs no new one.
            self.phase = Phase.HANDLING
            return
        self._set_deadline(min(now + self._guard.limits.body_timeout, self._body_cap))

    def request_done(self) -> None:
        """The handler returned: the connection waits for the next request."""
        self.request = None
        if self.inner is not None:
            self.phase = Phase.IDLE
            self._set_deadline(self._guard.now() + self._guard.limits.keepalive)

    # -- timer --------------------------------------------------------------------------

    def _set_deadline(self, deadline: float) -> None:
        """Later deadlines are picked up when the timer fires: no timer is made or
        cancelled per chunk or per request (they were three per request), only when a
        deadline is earlier than the armed timer or the timer fired early."""
        self._deadline = deadline
        if self._timer is None or self._timer.when() > deadline:
            self._cancel_timer()
            self._timer = self._guard.loop.call_at(deadline, self._expire)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self.inner is None or self.transport is None or self.phase is Phase.HANDLING:
            return
        if self._guard.now() < self._deadline:
            self._timer = self._guard.loop.call_at(self._deadline, self._expire)
            return
        self._close(self.phase.value)

    def _close(self, reason: str) -> None:
        assert self.transport is not None
        self._cancel_timer()
        self._guard.closed(reason)
        log.debug("Closing a connection: %s", reason)
        if self.phase in (Phase.HEADERS, Phase.BODY):  # a request is owed an answer
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()


class ConnectionGuard:
    """The connections of one server, their limits and their metrics."""

    def __init__(self, limits: GuardLimits, registry: CollectorRegistry | None = None) -> None:
        self.limits = limits
        self.loop = asyncio.get_running_loop()
        # In order of admission (a dict keeps it): the oldest makes way at the cap.
        self._open: dict[_GuardedConnection, None] = {}
        self._by_handler: dict[RequestHandler, _GuardedConnection] = {}
        self._full = False
        self._closed = Counter(
            "santeguard_http_connections_closed_total",
            "HTTP connections closed by SantéGuard's guard, by reason (header_timeout, "
            "body_timeout, idle; evicted: made way at the cap; over_capacity: refused at the "
            "cap, every connection being in a request).",
            ["reason"],
            registry=registry,
        )
        self._gauge = Gauge(
            "santeguard_http_connections",
            "HTTP connections open on SantéGuard's server.",
            registry=registry,
        )

    def now(self) -> float:
        return self.loop.time()

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """What ``loop.create_server`` calls per accepted connection."""
        return lambda: _GuardedConnection(self, server)

    def admit(self, conn: _GuardedConnection) -> bool:
        """Room for one more: at the cap, the oldest connection that holds no request
        (still waiting for headers, or idle) makes way; if every one is in a request,
        the new one is refused."""
        if len(self._open) >= self.limits.max_connections:
            oldest = next((c for c in self._open if c.evictable), None)
            if oldest is None:
                self.closed("over_capacity")
                self._warn_full()
                return False
            self._open.pop(oldest)
            oldest.evict()
        self._open[conn] = None
        self._gauge.set(len(self._open))
        return True

    def _warn_full(self) -> None:
        if not self._full:
            self._full = True
            log.warning(
                "%d HTTP connections open, the most allowed (appservice.max_connections), all "
                "in a request: new ones are closed until some end",
                self.limits.max_connections,
            )

    def release(self, conn: _GuardedConnection) -> None:
        self._open.pop(conn, None)
        if conn.inner is not None:
            self._by_handler.pop(conn.inner, None)
        self._gauge.set(len(self._open))
        if self._full and len(self._open) < self.limits.max_connections * 9 // 10:
            self._full = False
            log.info("HTTP connections back under appservice.max_connections")

    def closed(self, reason: str) -> None:
        self._closed.labels(reason=reason).inc()

    def register(self, handler: RequestHandler, conn: _GuardedConnection) -> None:
        """aiohttp hands requests with their handler: this finds the connection back."""
        self._by_handler[handler] = conn

    @web.middleware
    async def middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Marks the request's phases; a body cut off (by the guard or the client) is
        answered quietly: the client is gone, it is not a server error."""
        conn = self._by_handler.get(request.protocol)
        if conn is not None:
            conn.request_started(request)
        try:
            return await handler(request)
        except (ConnectionError, RuntimeError):  # aiohttp: RuntimeError("Connection closed.")
            if request.transport is not None and not request.transport.is_closing():
                raise
            log.debug("Request body cut off: the connection closed")
            return web.Response(status=408)  # never sent: the connection is gone
        finally:
            if conn is not None:
                conn.request_done()


class GuardedSite(web.BaseSite):
    """``web.TCPSite`` with every connection behind a :class:`ConnectionGuard`."""

    def __init__(
        self, runner: web.BaseRunner, guard: ConnectionGuard, host: str, port: int
    ) -> None:
        super().__init__(runner)
        self._guard = guard
        self._host = host
        self._port = port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(server), self._host, self._port, backlog=self._backlog
        )


async def start_guarded(
    app: web.Application,
    limits: GuardLimits,
    host: str,
    port: int,
    *,
    registry: CollectorRegistry | None = None,
) -> tuple[web.AppRunner, ConnectionGuard]:
    """Serve ``app`` on ``host:port`` behind a guard; the runner's ``cleanup`` stops it."""
    guard = ConnectionGuard(limits, registry)
    app.middlewares.append(guard.middleware)  # innermost: sees the handler's own errors
    # aiohttp's own idle timer (an hour by default, armed from the connection's start)
    # stays as a backstop that never fires before the guard's: it closes without a 408.
    backstop = limits.keepalive + limits.header_timeout
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=backstop)
    await runner.setup()
    await GuardedSite(runner, guard, host, port).start()
    return runner, guard


__all__ = ["MIN_BODY_RATE", "ConnectionGuard", "GuardLimits", "GuardedSite", "start_guarded"]
