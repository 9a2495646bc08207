"""Routes each stored event to the service that cares about it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bridge.core.ports import AuditPort, MatrixPort, RoomPort

log = logging.getLogger("santeguard.router")

MessageHandler = Callable[[dict[str, Any]], Awaitable[bool]]


class Backstop(Protocol):
    async def ensure_encrypted(self, room_id: str) -> bool: ...
    async def on_create(self, event: dict[str, Any]) -> bool: ...
    async def on_member(self, event: dict[str, Any]) -> bool: ...
    async def on_message(self, event: dict[str, Any]) -> bool: ...


class EventCrypto(Protocol):
    """The bot's encrypted device (bridge.e2ee.device.BotDevice)."""

    def note_encryption(self, room_id: str) -> None: ...
    async def decrypt(self, event: dict[str, Any]) -> dict[str, Any] | None: ...


class EventRouter:
    """Bot membership (join on invite), the gate's backstop, and commands."""

    def __init__(
        self,
        matrix: MatrixPort,
        rooms: RoomPort,
        audit: AuditPort,
        on_message: MessageHandler | None = None,
        backstop: Backstop | None = None,
        crypto: EventCrypto | None = None,
    ) -> None:
        self._matrix = matrix
        self._rooms = rooms
        self._audit = audit
        self._on_message = on_message
        self._backstop = backstop
        self._crypto = crypto

    async def handle(self, event: dict[str, Any]) -> bool:
        """Handle one event; return whether it called for any work."""
        event_type = event.get("type")
        if event_type == "m.room.create" and self._backstop is not None:
            return await self._backstop.on_create(event)
        if event_type == "m.room.member":
            if event.get("state_key") == self._matrix.bot_mxid:
                return await self._membership(event)
            return self._backstop is not None and await self._backstop.on_member(event)
        if self._crypto is not None and event_type == "m.room.encryption":
            self._crypto.note_encryption(str(event["room_id"]))
        if self._crypto is not None and event_type == "m.room.encrypted":
            if event.get("sender") != self._matrix.bot_mxid:
                return await self._encrypted(self._crypto, event)
        if event_type == "m.room.message" and event.get("sender") != self._matrix.bot_mxid:
            if self._backstop is not None and await self._backstop.on_message(event):
                return True  # refused content: redacted, never run as a command
            if self._on_message is not None:
                return await self._on_message(event)
        return False

    async def _encrypted(self, crypto: EventCrypto, event: dict[str, Any]) -> bool:
        """Decrypt, then route like a clear message, minus the backstop: on the wire it was
        encrypted. ``decrypt`` raises TransientError while the room key may still come."""
        clear = await crypto.decrypt(event)
        if clear is None:
            return True  # given up; the room was told
        if clear.get("type") == "m.room.message" and self._on_message is not None:
            return await self._on_message(clear)
        return True

    async def _membership(self, event: dict[str, Any]) -> bool:
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
            if self._backstop is not None:
                await self._backstop.ensure_encrypted(room_id)
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
