"""Decrypting the ``m.room.encrypted`` events that arrive through the transactions.

A room key can arrive after the event it opens (to-device messages travel separately),
so a missing key makes the dispatcher retry the event for a while, and the sender's
device is asked for the key again. What decrypts is also checked to hold together (the
right room, a session from one of the sender's own devices). Once the bot gives up, the
room is told which device it could not read, so nobody mistakes silence for delivery.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nio import AsyncClient, EncryptionError, MegolmEvent

from bridge.core.errors import TransientError
from bridge.e2ee.device.key_requests import MEGOLM, KeyRequests
from bridge.e2ee.device.sync import DeviceSync
from bridge.e2ee.device.undecryptable import UndecryptableLog

log = logging.getLogger("santeguard.crypto")

UndecryptableNotice = Callable[[str, str, str], Awaitable[None]]
"""Called with (room_id, sender, device_id) when the bot gives up decrypting an event."""


class Decryptor:
    """Clear events from encrypted ones; ``give_up_seconds`` bounds the wait for a key."""

    def __init__(
        self,
        *,
        sync: DeviceSync,
        key_requests: KeyRequests,
        undecryptable: UndecryptableLog,
        key_wait_seconds: float,
        give_up_seconds: float,
        on_undecryptable: UndecryptableNotice | None,
    ) -> None:
        self._sync = sync
        self._key_requests = key_requests
        self._undecryptable = undecryptable
        self.key_wait_seconds = key_wait_seconds
        self.give_up_seconds = give_up_seconds
        self.on_undecryptable = on_undecryptable
        self._first_failure: dict[str, float] = {}  # event ID -> first failed attempt

    async def decrypt(self, client: AsyncClient, event: dict[str, Any]) -> dict[str, Any] | None:
        """The clear event; ``TransientError`` while the key may still come; None once given up."""
        room_id = str(event["room_id"])
        event_id = str(event["event_id"])
        sender = str(event.get("sender", ""))
        content = event.get("content") or {}
        device_id = str(content.get("device_id") or "?")
        if content.get("algorithm") != MEGOLM:
            await self._give_up(room_id, event_id, sender, device_id, "unknown algorithm")
            return None
        megolm = MegolmEvent.from_dict(event)
        if not isinstance(megolm, MegolmEvent):
            await self._give_up(room_id, event_id, sender, device_id, "malformed event")
            return None
        deadline = time.monotonic() + self.key_wait_seconds
        while True:
            try:
                clear = client.decrypt_event(megolm)
            except EncryptionError as e:
                reason = str(e)
                # A missing session, or one known only from a later index, may still come
                # (late to-device, or a re-share on request); anything else (a replayed
                # index, a corrupt ciphertext) will not, so the room is told at once.
                waitable = "no session found" in reason or "unknown message index" in reason
                if not waitable or time.monotonic() >= deadline:
                    break
                await self._sync.next_sync(deadline - time.monotonic())
                continue
            else:
                return await self._checked(client, event, megolm, clear)
        if waitable:
            await self._key_requests.request(client, megolm)
        first = self._first_failure.setdefault(event_id, time.monotonic())
        if not waitable or time.monotonic() - first >= self.give_up_seconds:
            await self._give_up(room_id, event_id, sender, device_id, reason)
            return None
        raise TransientError("room key not received yet")

    async def _checked(
        self, client: AsyncClient, event: dict[str, Any], megolm: MegolmEvent, clear: Any
    ) -> dict[str, Any] | None:
        """Refuse what decrypts but does not hold together (wrong room, unknown device)."""
        room_id = str(event["room_id"])
        event_id = str(event["event_id"])
        sender = str(event.get("sender", ""))
        source: dict[str, Any] = clear.source if isinstance(clear.source, dict) else {}
        device_id = str(megolm.device_id or "?")
        if source.get("room_id", room_id) != room_id:
            log.warning("Encrypted event %s was encrypted for another room", event_id)
            await self._give_up(room_id, event_id, sender, device_id, "room mismatch")
            return None
        if not await self._sender_owns_key(client, sender, str(megolm.sender_key)):
            log.warning("Encrypted event %s: session not from a device of its sender", event_id)
            await self._give_up(room_id, event_id, sender, device_id, "unknown device")
            return None
        self._first_failure.pop(event_id, None)
        return {
            "type": source.get("type"),
            "content": source.get("content") or {},
            "event_id": event_id,
            "room_id": room_id,
            "sender": sender,
            "origin_server_ts": event.get("origin_server_ts"),
            "unsigned": event.get("unsigned") or {},
        }

    async def _sender_owns_key(self, client: AsyncClient, sender: str, curve25519: str) -> bool:
        """Whether the Megolm session came from one of the sender's own devices."""
        for attempt in range(2):
            for device in client.device_store.active_user_devices(sender):
                if device.curve25519 == curve25519:
                    return True
            if attempt == 0:
                client.olm.users_for_key_query.add(sender)
                await self._sync.query_keys(client)
        return False

    async def _give_up(
        self, room_id: str, event_id: str, sender: str, device_id: str, reason: str
    ) -> None:
        log.warning(
            "Giving up decrypting %s in %s from %s (device %s): %s",
            event_id,
            room_id,
            sender,
            device_id,
            reason,
        )
        if self.on_undecryptable is not None:
            await self.on_undecryptable(room_id, sender, device_id)  # may raise: retried
        self._undecryptable.record(room_id, sender, device_id)
        self._first_failure.pop(event_id, None)
