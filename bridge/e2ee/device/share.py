"""Encrypted sending, with the room key shared only with devices of allowed members.

nio's own sharing gives the room key to every device in the room; here ``device_allowed``
decides per member, so a member the policy refuses (an unverified practitioner, say)
cannot read what the bot sends from then on.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from nio import AsyncClient, JoinedMembersError, KeysClaimError

from bridge.core.errors import TransientError
from bridge.e2ee.device.sync import DeviceSync
from bridge.e2ee.errors import CryptoError
from bridge.e2ee.http import HomeserverApi, q

DeviceAllowed = Callable[[str, str], Awaitable[bool]]
"""(user_id, room_id) -> may this member's devices get this room's keys?"""

_ROOM_WAIT_SECONDS = 10.0
ENCRYPTED = "m.room.encrypted"


class EncryptedSender:
    """Sends encrypted events, one room at a time (a room key is shared once per session)."""

    def __init__(
        self, api: HomeserverApi, user_id: str, sync: DeviceSync, device_allowed: DeviceAllowed
    ) -> None:
        self._api = api
        self._user_id = user_id
        self._sync = sync
        self.device_allowed = device_allowed
        self._room_locks: dict[str, asyncio.Lock] = {}

    async def send(
        self,
        client: AsyncClient,
        token: str,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        txn_id: str | None = None,
    ) -> str:
        """Encrypt and send with the device's ``token``; return the event ID. A given
        ``txn_id`` makes a repeat (after a crash) return the first event, not a new one."""
        async with self._lock(room_id):
            encrypted = await self._encrypt(client, token, room_id, event_type, content)
            # Sent under the room's lock: events leave in the order of their Megolm index.
            _, body = await self._api.request(
                "PUT",
                f"/rooms/{q(room_id)}/send/{ENCRYPTED}/{q(txn_id or uuid.uuid4().hex)}",
                token=token,
                json=encrypted,
            )
        return str(body["event_id"])

    async def encrypt(
        self,
        client: AsyncClient,
        token: str,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
    ) -> dict[str, Any]:
        """The ``m.room.encrypted`` content for ``content``, for another user to send.

        The room key is shared first, exactly as for ``send``; whoever sends the result
        must be in the room (another appservice user: a mail ghost).
        """
        async with self._lock(room_id):
            return await self._encrypt(client, token, room_id, event_type, content)

    def _lock(self, room_id: str) -> asyncio.Lock:
        return self._room_locks.setdefault(room_id, asyncio.Lock())

    async def _encrypt(
        self,
        client: AsyncClient,
        token: str,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
    ) -> dict[str, Any]:
        """Share the room key with the allowed devices if needed, then Megolm-encrypt.

        The caller holds the room's lock. ``m.relates_to`` is copied to the clear
        content too (spec: the homeserver needs it to aggregate replies and threads).
        """
        room = await self._synced_room(client, room_id)
        allowed = await self._apply_policy(client, room)
        if client.olm.should_share_group_session(room_id):
            await self._share_room_key(client, token, room_id, allowed)
        enc_type, encrypted = client.encrypt(room_id, event_type, content)
        if enc_type != ENCRYPTED:
            raise CryptoError(f"the device produced {enc_type!r}, not {ENCRYPTED!r}")
        out: dict[str, Any] = dict(encrypted)
        relates_to = content.get("m.relates_to")
        if isinstance(relates_to, dict):
            out["m.relates_to"] = relates_to
        return out

    async def _synced_room(self, client: AsyncClient, room_id: str) -> Any:
        """nio's view of the room, once it knows the room is encrypted and its members."""
        deadline = time.monotonic() + _ROOM_WAIT_SECONDS
        room = client.rooms.get(room_id)
        while room is None or not room.encrypted:
            if time.monotonic() >= deadline:
                raise TransientError("the encrypted device has not synced the room yet")
            await self._sync.next_sync(deadline - time.monotonic())
            room = client.rooms.get(room_id)
        if not room.members_synced:
            resp = await client.joined_members(room_id)
            if isinstance(resp, JoinedMembersError):
                raise TransientError(f"could not list the room's members: {resp.status_code}")
        await self._sync.query_keys(client)
        return room

    async def _apply_policy(self, client: AsyncClient, room: Any) -> list[str]:
        """Blacklist the known devices of members the policy refuses; return the others.

        Blacklisting (or lifting it) makes nio rotate the room's outbound session, so a
        member refused now never gets the key of anything sent from now on.
        """
        allowed: list[str] = []
        for user_id in list(room.users):
            if user_id == self._user_id:
                continue  # the bot's other (stale) devices get nothing
            ok = await self.device_allowed(user_id, room.room_id)
            for device in client.device_store.active_user_devices(user_id):
                blacklisted = client.olm.is_device_blacklisted(device)
                if ok and blacklisted:
                    client.unblacklist_device(device)
                elif not ok and not blacklisted:
                    client.blacklist_device(device)
            if ok:
                allowed.append(user_id)
        return allowed

    async def _share_room_key(
        self, client: AsyncClient, token: str, room_id: str, users: list[str]
    ) -> None:
        """nio's ``share_group_session`` restricted to ``users`` (nio shares with everyone)."""
        olm = client.olm
        async with self._sync.keys_lock:
            missing = olm.get_missing_sessions(users)
            if missing:
                resp = await client.keys_claim(missing)
                if isinstance(resp, KeysClaimError):
                    raise TransientError(f"one-time key claim failed: {resp.status_code}")
            for sharing_with, to_device in olm.share_group_session_parallel(
                room_id, users, ignore_unverified_devices=True
            ):
                await self._api.request(
                    "PUT",
                    f"/sendToDevice/m.room.encrypted/{uuid.uuid4().hex}",
                    token=token,
                    json=to_device,
                )
                olm.outbound_group_sessions[room_id].users_shared_with.update(sharing_with)
            olm.outbound_group_sessions[room_id].shared = True
