"""The bot's own membership: it joins rooms it is invited to and remembers where it is."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bridge.commands.rooms import RoomStore
from bridge.core.ports import AuditPort, MatrixPort, RoutesPort

log = logging.getLogger("santeguard.bot")

JoinHook = Callable[[str], Awaitable[object]]


class BotMembership:
    """``on_joined`` hooks run once the bot joined a room (e.g. forced encryption)."""

    def __init__(
        self,
        matrix: MatrixPort,
        rooms: RoomStore,
        audit: AuditPort,
        *,
        on_joined: Sequence[JoinHook] = (),
    ) -> None:
        self._matrix = matrix
        self._rooms = rooms
        self._audit = audit
        self._on_joined = tuple(on_joined)

    def subscribe(self, routes: RoutesPort) -> None:
        routes.on("m.room.member", self.on_member)

    async def on_member(self, event: dict[str, Any]) -> bool:
        if event.get("state_key") != self._matrix.bot_mxid:
            return False
        content = event.get("content") or {}
        membership = content.get("membership")
        room_id = str(event["room_id"])
        if membership == "invite":
            await self._matrix.join(room_id)
            await self._rooms.set_joined(room_id, True)
            await self._audit.record(
                self._matrix.bot_mxid, "bot.joined", room_id=room_id, subject=event.get("sender")
            )
            log.info("Joined %s on invitation by %s", room_id, event.get("sender"))
            for hook in self._on_joined:
                await hook(room_id)
        elif membership == "join":
            await self._rooms.set_joined(room_id, True)
        elif membership in ("leave", "ban"):
            await self._rooms.set_joined(room_id, False)
            await self._audit.record(
                self._matrix.bot_mxid,
                f"bot.{membership}",
                room_id=room_id,
                subject=event.get("sender"),
            )
        return True
