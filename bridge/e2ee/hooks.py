"""The e2ee capability's events: note where encryption is on, decrypt what the bot receives.

A decrypted event is handed back to the routes as its clear type (``on_decrypted``
handlers), minus the guards: on the wire it was encrypted. While a room key may still
arrive, ``decrypt`` raises TransientError and the dispatcher retries the event.

The appservice receives every room's events (the enforcement user is in every room),
but the bot's device decrypts only in rooms the bot joined because it was invited:
elsewhere it holds no key, must not ask for one, and must not hold up the room's other
events (enforcement) while it waits for keys that will never come.
"""

from __future__ import annotations

from typing import Any, Protocol

from bridge.core.ports import RoutesPort


class DecryptingDevice(Protocol):
    def note_encryption(self, room_id: str) -> None: ...
    async def decrypt(self, event: dict[str, Any]) -> dict[str, Any] | None: ...


class JoinedRooms(Protocol):
    def is_joined(self, room_id: str) -> bool: ...


class EncryptedEvents:
    def __init__(self, device: DecryptingDevice, joined: JoinedRooms) -> None:
        self._device = device
        self._joined = joined
        self._routes: RoutesPort | None = None

    def subscribe(self, routes: RoutesPort) -> None:
        self._routes = routes
        routes.on("m.room.encryption", self.on_encryption)
        routes.on("m.room.encrypted", self.on_encrypted, ignore_own=True)

    async def on_encryption(self, event: dict[str, Any]) -> bool:
        self._device.note_encryption(str(event["room_id"]))
        return False

    async def on_encrypted(self, event: dict[str, Any]) -> bool:
        if not self._joined.is_joined(str(event.get("room_id"))):
            return False  # not a room the bot was asked into: not ours to read
        clear = await self._device.decrypt(event)
        if clear is None or self._routes is None:
            return True  # given up (the room was told), or nobody to hand it to
        acted = await self._routes.handle_decrypted(clear)
        return acted or clear.get("type") != "m.room.message"
