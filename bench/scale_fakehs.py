"""A local stand-in for the homeserver's HTTP API, answering from the synthetic network.

A real Synapse cannot be given 10,000 rooms in reasonable time on a 2-core machine, so
the scale benchmark measures SantéGuard's side — its snapshots, its sweep over its own
state, its audit — with the homeserver adapters (mautrix intents, the admin API client)
talking HTTP to this server. It serves what those adapters call, in Synapse's shapes:
the client API (registration, joins, ``/joined_rooms``, ``/members``, state, sends,
kicks) and the admin API the retention audit uses (admin check, room list, room state,
``/messages``, ``fetch_event``: expired messages answer 404, purged). Anything else is
a 404 ``M_UNRECOGNIZED``, counted in ``/_fake/stats`` so a gap shows up.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bench.scale_net import BOT, ENFORCER, Network

CLIENT = "/_matrix/client/v3"
ADMIN = "/_synapse/admin"
_PAGE = 100


def _ok(data: Any) -> web.Response:
    return web.json_response(data)


def _missing(errcode: str = "M_NOT_FOUND") -> web.Response:
    return web.json_response({"errcode": errcode, "error": "not found"}, status=404)


def _const(data: Any, status: int = 200) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler that always answers ``data``."""

    async def handler(_: web.Request) -> web.Response:
        return web.json_response(data, status=status)

    return handler


class FakeHomeserver:
    def __init__(self, net: Network) -> None:
        self.net = net
        self.calls: collections.Counter[str] = collections.Counter()
        self._ids = itertools.count()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._count])
        r = app.router
        versions = {"versions": [f"v1.{n}" for n in range(1, 12)]}
        r.add_get("/_matrix/client/versions", _const(versions))
        r.add_post("/_matrix/client/v1/appservice/{id}/ping", _const({"duration_ms": 1}))
        r.add_post(CLIENT + "/register", self.register)
        r.add_route("*", CLIENT + "/profile/{user}/{field}", _const({}))
        r.add_get(CLIENT + "/account/whoami", self.whoami)
        r.add_get(CLIENT + "/joined_rooms", self.joined_rooms)
        r.add_post(CLIENT + "/join/{room}", self.join)
        r.add_post(CLIENT + "/rooms/{room}/join", self.join)
        r.add_post(CLIENT + "/rooms/{room}/{action:kick|invite|leave|ban|receipt.*}", self.empty)
        r.add_get(CLIENT + "/rooms/{room}/members", self.members)
        r.add_get(CLIENT + "/rooms/{room}/joined_members", self.joined_members)
        r.add_get(CLIENT + "/rooms/{room}/state", self.all_state)
        for tail in ("", "/", "/{key}"):  # an empty state key: with or without the slash
            r.add_get(CLIENT + "/rooms/{room}/state/{type}" + tail, self.one_state)
            r.add_put(CLIENT + "/rooms/{room}/state/{type}" + tail, self.sent)
        r.add_put(CLIENT + "/rooms/{room}/send/{type}/{txn}", self.sent)
        r.add_put(CLIENT + "/rooms/{room}/redact/{event}/{txn}", self.sent)
        r.add_get(ADMIN + "/v1/users/{user}/admin", _const({"admin": True}))
        r.add_get(ADMIN + "/v2/users/{user}", _const({}))
        r.add_get(ADMIN + "/v1/rooms", self.admin_rooms)
        r.add_get(ADMIN + "/v1/rooms/{room}/state", self.admin_state)
        r.add_get(ADMIN + "/v1/rooms/{room}/messages", self.admin_messages)
        r.add_get(ADMIN + "/v1/fetch_event/{event}", self.fetch_event)
        r.add_get(ADMIN + "/v1/statistics/users/media", _const({"users": [], "total": 0}))
        r.add_get("/_fake/stats", self.stats)
        r.add_route(
            "*", "/{tail:.*}", _const({"errcode": "M_UNRECOGNIZED", "error": "not found"}, 404)
        )
        return app

    @web.middleware
    async def _count(self, request: web.Request, handler: Any) -> web.StreamResponse:
        resp: web.StreamResponse = await handler(request)
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "?"
        if name == "/{tail}":
            name = request.path  # not served: named in full, so the gap shows
        self.calls[f"{request.method} {name} {resp.status}"] += 1
        return resp

    async def stats(self, request: web.Request) -> web.Response:
        return _ok(dict(self.calls))

    def _room(self, request: web.Request) -> int | None:
        return self.net.room_index(request.match_info["room"])

    # -- client API -----------------------------------------------------------------

    async def register(self, request: web.Request) -> web.Response:
        body = await request.json()
        user = f"@{body.get('username', 'x')}:{ENFORCER.split(':', 1)[1]}"
        return _ok({"user_id": user})

    async def whoami(self, request: web.Request) -> web.Response:
        return _ok({"user_id": request.query.get("user_id", BOT)})

    async def joined_rooms(self, request: web.Request) -> web.Response:
        user = request.query.get("user_id", BOT)
        net = self.net
        rooms = [net.room_id(i) for i in range(net.rooms) if user != BOT or net.has_bot(i)]
        return _ok({"joined_rooms": rooms})

    async def join(self, request: web.Request) -> web.Response:
        return _ok({"room_id": request.match_info["room"]})

    async def empty(self, request: web.Request) -> web.Response:
        return _ok({})

    async def sent(self, request: web.Request) -> web.Response:
        return _ok({"event_id": f"$fake{next(self._ids)}"})

    def _state(self, request: web.Request) -> list[dict[str, Any]] | None:
        i = self._room(request)
        return None if i is None else self.net.state(i)

    async def members(self, request: web.Request) -> web.Response:
        state = self._state(request)
        if state is None:
            return _missing("M_FORBIDDEN")
        skip = request.query.get("not_membership")
        chunk = [
            e
            for e in state
            if e["type"] == "m.room.member" and e["content"].get("membership") != skip
        ]
        return _ok({"chunk": chunk})

    async def joined_members(self, request: web.Request) -> web.Response:
        state = self._state(request) or []
        joined = {
            e["state_key"]: {"display_name": None, "avatar_url": None}
            for e in state
            if e["type"] == "m.room.member" and e["content"].get("membership") == "join"
        }
        return _ok({"joined": joined})

    async def all_state(self, request: web.Request) -> web.Response:
        state = self._state(request)
        return _missing("M_FORBIDDEN") if state is None else _ok(state)

    async def one_state(self, request: web.Request) -> web.Response:
        kind, key = request.match_info["type"], request.match_info.get("key", "")
        for e in self._state(request) or []:
            if e["type"] == kind and e["state_key"] == key:
                return _ok(e if request.query.get("format") == "event" else e["content"])
        return _missing()

    # -- admin API ------------------------------------------------------------------

    async def admin_rooms(self, request: web.Request) -> web.Response:
        start = int(request.query.get("from", 0))
        limit = int(request.query.get("limit", _PAGE))
        end = min(self.net.rooms, start + limit)
        rooms = [{"room_id": self.net.room_id(i)} for i in range(start, end)]
        body: dict[str, Any] = {"rooms": rooms, "offset": start, "total_rooms": self.net.rooms}
        if end < self.net.rooms:
            body["next_batch"] = end
        return _ok(body)

    async def admin_state(self, request: web.Request) -> web.Response:
        state = self._state(request)
        return _missing() if state is None else _ok({"state": state})

    async def admin_messages(self, request: web.Request) -> web.Response:
        """What is left of the room from its start: its state and the recent messages
        (the expired one was purged), with their depth, on one page."""
        i = self._room(request)
        if i is None:
            return _missing()
        left = [e for e in self.net.events(i) if not self.net.message_expired(e["event_id"])]
        chunk = [dict(e, depth=n + 1) for n, e in enumerate(left)]
        return _ok({"chunk": chunk, "start": "s0"})

    async def fetch_event(self, request: web.Request) -> web.Response:
        event_id = request.match_info["event"]
        if self.net.message_expired(event_id):
            return _missing()
        return _ok({"event": {"event_id": event_id, "depth": 1}})


async def serve(net: Network, port: int, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set."""
    runner = web.AppRunner(FakeHomeserver(net).app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
