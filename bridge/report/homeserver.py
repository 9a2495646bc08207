"""Rooms as the homeserver shows them to the enforcement user (client-server API).

The appservice token masquerades as the enforcement user (``?user_id=``), which the room
module puts in every room: its joined rooms, each room's joined members, name,
encryption and ``m.room.retention``. Read-only. The token is sent as a header and never
appears in an error text or a log line.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp

from bridge.report.model import LiveRoom


class HomeserverUnavailable(Exception):
    """The homeserver did not answer usably; ``reason`` is a short code, never a secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Missing(Exception):
    """404: the state event does not exist."""


class _Hidden(Exception):
    """403: the enforcement user cannot see the room."""


class HomeserverRooms:
    """``LiveRoomsPort`` over HTTP."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        homeserver: str,
        as_token: str,
        user_id: str,
        *,
        timeout: float = 15.0,
    ) -> None:
        self._session = session
        self._base = homeserver.rstrip("/") + "/_matrix/client/v3"
        self._headers = {"Authorization": f"Bearer {as_token}"}
        self._params = {"user_id": user_id}
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 10.0))

    def __repr__(self) -> str:
        return f"HomeserverRooms({self._base!r}, {self._params['user_id']!r})"  # never the token

    async def _get(self, path: str) -> dict[str, Any]:
        try:
            async with self._session.get(
                self._base + path,
                params=self._params,
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,  # never carry the token to another host
            ) as resp:
                if resp.status == 404:
                    raise _Missing()
                if resp.status == 403:
                    raise _Hidden()
                if resp.status != 200:
                    raise HomeserverUnavailable(f"http_{resp.status}")
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise HomeserverUnavailable(type(e).__name__) from None
        if not isinstance(body, dict):
            raise HomeserverUnavailable("bad_response")
        return body

    async def _state(self, room_id: str, event_type: str) -> dict[str, Any] | None:
        try:
            return await self._get(f"/rooms/{quote(room_id, safe='')}/state/{event_type}")
        except _Missing:
            return None

    async def joined_rooms(self) -> list[str]:
        try:
            body = await self._get("/joined_rooms")
        except (_Missing, _Hidden):
            raise HomeserverUnavailable("joined_rooms_refused") from None
        rooms = body.get("joined_rooms")
        return [r for r in rooms if isinstance(r, str)] if isinstance(rooms, list) else []

    async def room(self, room_id: str) -> LiveRoom | None:
        try:
            members = await self._get(f"/rooms/{quote(room_id, safe='')}/joined_members")
            name = await self._state(room_id, "m.room.name")
            encryption = await self._state(room_id, "m.room.encryption")
            retention = await self._state(room_id, "m.room.retention")
        except (_Hidden, _Missing):
            return None
        joined = members.get("joined")
        value = (name or {}).get("name")
        return LiveRoom(
            name=value.strip() if isinstance(value, str) and value.strip() else None,
            encrypted=bool(encryption and encryption.get("algorithm")),
            members=tuple(sorted(joined)) if isinstance(joined, dict) else (),
            retention=retention,
        )
