"""Routes each stored event to the service that cares about it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .ports import AuditPort, MatrixPort, RoomPort

log = logging.getLogger("santeguard.router")

MessageHandler = Callable[[dict[str, Any]], Awaitable[bool]]


class EventRouter:
    """Bot membership (join on invite) and room messages (commands) for now."""

    def __init__(
        self,
        matrix: MatrixPort,
        rooms: RoomPort,
        audit: AuditPort,
        on_message: MessageHandler | None = None,
    ) -> None:
        self._matrix = matrix
        self._rooms = rooms
        self._audit = audit
        self._on_message = on_message

    async def handle(self, event: dict[str, Any]) -> bool:
        """Handle one event; return whether it called for any work."""
        event_type = event.get("type")
        if event_type == "m.room.member":
            return await self._membership(event)
        if event_type == "m.room.message" and event.get("sender") != self._matrix.bot_mxid:
            if self._on_message is not None:
                return await self._on_message(event)
        return False

    async def _membership(self, event: dict[str, Any]) -> bool:
        if event.get("state_key") != self._matrix.bot_mxid:
            return False
        content = event.get("content") or {}
        membership = content.get("membership")
        room_id = event["room_id"]
        if membership == "invite":
            await self._matrix.join(room_id)
            await self._rooms.set_joined(room_id, True)
            await self._audit.record(
                self._matrix.bot_mxid, "bot.joined", room_id=room_id, subject=event.get("sender")
            )
            log.info("Joined %s on invitation by %s", room_id, event.get("sender"))
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
