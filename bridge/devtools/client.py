"""A minimal Matrix client over plain HTTP, for tests and the demo narration.

Just what a practitioner's client does in our scenarios: create rooms, invite, join,
send text, and wait for a message with ``/sync``. (Encrypted traffic uses matrix-nio.)
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp


class MatrixError(RuntimeError):
    def __init__(self, status: int, errcode: str | None, error: str | None) -> None:
        super().__init__(f"{status} {errcode}: {error}")
        self.status = status
        self.errcode = errcode
        self.error = error


class SimpleClient:
    def __init__(self, base_url: str, user_id: str, access_token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.user_id = user_id
        self._token = access_token
        self._since: str | None = None
        self._txn = itertools.count(int(time.time() * 1000))
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SimpleClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        async with self._session.request(
            method,
            f"{self.base_url}/_matrix/client/v3{path}",
            json=body,
            headers={"Authorization": f"Bearer {self._token}"},
        ) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 200:
                data = data if isinstance(data, dict) else {}
                raise MatrixError(resp.status, data.get("errcode"), data.get("error"))
            return data

    async def create_room(
        self,
        *,
        invite: tuple[str, ...] = (),
        name: str | None = None,
        initial_state: list[dict[str, Any]] | None = None,
        preset: str = "private_chat",
    ) -> str:
        body: dict[str, Any] = {"preset": preset, "invite": list(invite)}
        if name:
            body["name"] = name
        if initial_state:
            body["initial_state"] = initial_state
        data = await self.request("POST", "/createRoom", body)
        return str(data["room_id"])

    async def invite(self, room_id: str, user_id: str) -> None:
        await self.request("POST", f"/rooms/{quote(room_id)}/invite", {"user_id": user_id})

    async def join(self, room_id: str) -> None:
        await self.request("POST", f"/join/{quote(room_id)}", {})

    async def send_text(self, room_id: str, body: str) -> str:
        txn = next(self._txn)
        data = await self.request(
            "PUT",
            f"/rooms/{quote(room_id)}/send/m.room.message/{txn}",
            {"msgtype": "m.text", "body": body},
        )
        return str(data["event_id"])

    async def joined_members(self, room_id: str) -> set[str]:
        data = await self.request("GET", f"/rooms/{quote(room_id)}/joined_members")
        return set(data.get("joined", {}))

    async def sync_once(self, timeout_ms: int = 0) -> dict[str, Any]:
        path = f"/sync?timeout={timeout_ms}"
        if self._since:
            path += f"&since={quote(self._since)}"
        data: dict[str, Any] = await self.request("GET", path)
        self._since = data.get("next_batch", self._since)
        return data

    async def recent_events(self, room_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """The room's latest events, newest first (``/messages``, no sync state)."""
        data = await self.request("GET", f"/rooms/{quote(room_id)}/messages?dir=b&limit={limit}")
        return [dict(ev) for ev in data.get("chunk", [])]

    async def wait_for_recent(
        self, room_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15
    ) -> dict[str, Any]:
        """Poll ``/messages`` until a recent event matches (independent of sync position)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev in await self.recent_events(room_id):
                if predicate(ev):
                    return ev
            await asyncio.sleep(0.1)
        raise TimeoutError(f"no matching event in {room_id} within {timeout} s")

    async def wait_for_event(
        self, room_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15
    ) -> dict[str, Any]:
        """Sync until an event in ``room_id`` matches; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = await self.sync_once(timeout_ms=1000)
            for section in ("join", "leave"):
                room = data.get("rooms", {}).get(section, {}).get(room_id)
                if not room:
                    continue
                for ev in room.get("timeline", {}).get("events", []):
                    if predicate(ev):
                        return dict(ev)
            await asyncio.sleep(0)
        raise TimeoutError(f"no matching event in {room_id} within {timeout} s")
