"""The bot as an encrypted member of its rooms: one matrix-nio device (vodozemac backend).

Room events keep arriving through the durable appservice transactions; this device only
keeps the crypto state a real client keeps, through its own ``/sync`` loop: to-device
room keys, one-time-key top-ups and device-list changes. ``m.room.encrypted`` events from
the transactions are decrypted here (``decrypt``) and then routed like clear ones.
Replies to encrypted rooms are encrypted here too (``send_encrypted``), with the room key
shared only with the devices of members that ``device_allowed`` accepts.

The device is created once with ``m.login.application_service`` (the bot user has no
password) and its ID, token and pickle key are kept 0600 in ``store_path`` next to the
nio store, so a restart reuses the same device and identity keys. See docs/e2ee.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    EncryptionError,
    JoinedMembersError,
    KeysClaimError,
    KeysQueryError,
    KeysUploadError,
    LocalProtocolError,
    MegolmEvent,
    SyncError,
    WhoamiError,
)
from nio.store import SqliteStore

from bridge.core.errors import TransientError
from bridge.e2ee.cross_signing import CrossSigningKeys, publish
from bridge.e2ee.errors import CryptoError
from bridge.e2ee.files import ensure_private_dir, read_json, restrict_tree, write_private_json
from bridge.e2ee.http import HomeserverApi, q
from bridge.e2ee.signing import sign_json
from bridge.e2ee.status import RoomEncryption, UndecryptableDevice

log = logging.getLogger("santeguard.crypto")

DeviceAllowed = Callable[[str, str], Awaitable[bool]]
"""(user_id, room_id) -> may this member's devices get this room's keys?"""
"""Policy hook: may this user's devices receive the bot's room keys?"""

UndecryptableNotice = Callable[[str, str, str], Awaitable[None]]
"""Called with (room_id, sender, device_id) when the bot gives up decrypting an event."""

MEGOLM = "m.megolm.v1.aes-sha2"
CREDENTIALS_FILE = "device.json"
UNDECRYPTABLE_FILE = "undecryptable.json"
_MAX_UNDECRYPTABLE_PER_ROOM = 20
_ROOM_WAIT_SECONDS = 10.0


async def allow_all(user_id: str, room_id: str) -> bool:
    """Default policy until the verified-practitioner gate plugs in."""
    return True


def _sync_filter() -> dict[str, Any]:
    """Only what crypto state needs: membership and encryption state, no messages.

    Messages come through the appservice transactions; leaving them out here keeps the
    sync small and stops nio from consuming keys or key requests on its own.
    """
    return {
        "presence": {"types": []},
        "account_data": {"types": []},
        "room": {
            "timeline": {
                "limit": 50,
                "not_types": ["m.room.message", "m.room.encrypted", "m.reaction", "m.sticker"],
            },
            "ephemeral": {"types": []},
            "account_data": {"types": []},
        },
    }


class BotDevice:
    """The bot's one encrypted device. ``start`` once the bot user exists."""

    def __init__(
        self,
        *,
        homeserver: str,
        user_id: str,
        as_token: str,
        session: aiohttp.ClientSession,
        store_path: Path,
        display_name: str = "SantéGuard",
        key_wait_seconds: float = 2.0,
        give_up_seconds: float = 60.0,
        sync_timeout_ms: int = 30_000,
        verify_ssl: bool = True,
        device_allowed: DeviceAllowed = allow_all,
        on_undecryptable: UndecryptableNotice | None = None,
    ) -> None:
        self.homeserver = homeserver.rstrip("/")
        self.user_id = user_id
        self._as_token = as_token
        self._api = HomeserverApi(session, self.homeserver)
        self._store = Path(store_path)
        self._display_name = display_name
        self.key_wait_seconds = key_wait_seconds
        self.give_up_seconds = give_up_seconds
        self._sync_timeout_ms = sync_timeout_ms
        self._verify_ssl = verify_ssl
        self.device_allowed: DeviceAllowed = device_allowed
        self.on_undecryptable = on_undecryptable
        self._client: Any = None  # nio.AsyncClient once started
        self._token = ""
        self._ready = asyncio.Event()
        self._synced = asyncio.Event()  # replaced after every sync: a pulse for waiters
        self._sync_task: asyncio.Task[None] | None = None
        self._keys_lock = asyncio.Lock()
        self._room_locks: dict[str, asyncio.Lock] = {}
        self._encrypted: set[str] = set()
        self._first_failure: dict[str, float] = {}
        # session ID -> (sender, sender's curve25519 key, room ID) of each key request
        self._key_requests: dict[str, tuple[str, str, str]] = {}
        self.cross_signed = False

    # -- identity --------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def device_id(self) -> str | None:
        return str(self._client.device_id) if self._client is not None else None

    @property
    def identity_keys(self) -> dict[str, str]:
        """The device's curve25519 and ed25519 public keys."""
        if self._client is None or self._client.olm is None:
            return {}
        return dict(self._client.olm.account.identity_keys)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Restore (or create once) the device, publish keys and identity, start syncing."""
        if self._ready.is_set():
            return
        ensure_private_dir(self._store)
        creds = await self._credentials()
        client = AsyncClient(
            self.homeserver,
            self.user_id,
            device_id=creds["device_id"],
            store_path=str(self._store),
            config=AsyncClientConfig(
                store=SqliteStore,
                encryption_enabled=True,
                store_sync_tokens=True,
                pickle_key=creds["pickle_key"],
                max_timeouts=2,
                request_timeout=30,
            ),
            ssl=None if self._verify_ssl else False,
        )
        client.restore_login(self.user_id, creds["device_id"], creds["access_token"])
        self._install_forward_policy(client.olm)
        self._client = client
        self._token = creds["access_token"]
        restrict_tree(self._store)
        try:
            if client.should_upload_keys:
                resp = await client.keys_upload()
                if isinstance(resp, KeysUploadError):
                    raise TransientError(f"device key upload failed: {resp.status_code}")
            keys = CrossSigningKeys.load_or_create(self._store, self.user_id)
            await publish(
                self._api,
                keys,
                device_id=creds["device_id"],
                device_token=self._token,
                as_token=self._as_token,
                device_sign_json=self._device_sign_json,
            )
            self.cross_signed = True
            # Full state on the first sync after a restart: nio keeps no room state on disk.
            await self._sync_once(0, full_state=client.loaded_sync_token is not None)
        except BaseException:
            await self._close_client()
            raise
        restrict_tree(self._store)
        self._sync_task = asyncio.create_task(self._sync_forever(), name="santeguard-e2ee-sync")
        self._ready.set()
        log.info(
            "Encrypted device %s ready (ed25519 %s)",
            creds["device_id"],
            self.identity_keys.get("ed25519"),
        )

    async def stop(self) -> None:
        self._ready.clear()
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
            self._sync_task = None
        await self._close_client()

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        await client.close()
        if client.store is not None:
            client.store.database.close()

    async def _credentials(self) -> dict[str, str]:
        """The stored device, if its token still works; otherwise a new appservice login."""
        path = self._store / CREDENTIALS_FILE
        data = read_json(path)
        if isinstance(data, dict) and data.get("user_id") == self.user_id:
            creds = {k: str(data[k]) for k in ("device_id", "access_token", "pickle_key")}
            status, who = await self._api.request(
                "GET", "/account/whoami", token=creds["access_token"], ok=(200, 401)
            )
            if status == 200 and who.get("device_id") == creds["device_id"]:
                return creds
            # Only a revoked token (device deleted by an admin) ever leads here.
            log.warning(
                "The stored device %s is no longer valid; logging in a new one",
                creds["device_id"],
            )
        _, body = await self._api.request(
            "POST",
            "/login",
            token=self._as_token,
            json={
                "type": "m.login.application_service",
                "identifier": {"type": "m.id.user", "user": self.user_id},
                "initial_device_display_name": self._display_name,
            },
        )
        creds = {
            "device_id": str(body["device_id"]),
            "access_token": str(body["access_token"]),
            "pickle_key": secrets.token_urlsafe(32),
        }
        write_private_json(path, {"user_id": self.user_id, **creds})
        log.info("Created the bot's encrypted device %s", creds["device_id"])
        return creds

    def _device_sign_json(self, obj: dict[str, Any]) -> dict[str, Any]:
        account = self._client.olm.account

        def sign(message: bytes) -> str:
            return str(account.sign(message.decode("utf-8")))

        return sign_json(obj, self.user_id, str(self._client.device_id), sign)

    # -- sync ------------------------------------------------------------------------

    async def _sync_forever(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._sync_once(self._sync_timeout_ms)
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("Encrypted device sync failed (%s); retrying in %.1f s", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _sync_once(self, timeout_ms: int, *, full_state: bool = False) -> None:
        client = self._client
        resp = await client.sync(
            timeout=timeout_ms, sync_filter=_sync_filter(), full_state=full_state or None
        )
        if isinstance(resp, SyncError):
            raise TransientError(f"sync failed: {resp.status_code}")
        await client.send_to_device_messages()
        async with self._keys_lock:
            if client.should_upload_keys:
                await client.keys_upload()
            if client.should_query_keys:
                await client.keys_query()
            if client.should_claim_keys:
                await client.keys_claim(client.get_users_for_key_claiming())
        restrict_tree(self._store)
        pulse, self._synced = self._synced, asyncio.Event()
        pulse.set()

    async def _next_sync(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), max(timeout, 0.0))

    async def _wait_ready(self) -> Any:
        if not self._ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), max(self.key_wait_seconds, 0.1))
        if not self._ready.is_set() or self._client is None:
            raise TransientError("the bot's encrypted device is not ready yet")
        return self._client

    # -- decryption ------------------------------------------------------------------

    async def decrypt(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The clear event for an ``m.room.encrypted`` room event.

        Raises ``TransientError`` while the room key may still come (the dispatcher retries
        the event); after ``give_up_seconds`` records the sender's device, sends the room a
        notice through ``on_undecryptable`` and returns None.
        """
        client = await self._wait_ready()
        room_id = str(event["room_id"])
        event_id = str(event["event_id"])
        sender = str(event.get("sender", ""))
        content = event.get("content") or {}
        self.note_encryption(room_id)
        device_id = str(content.get("device_id") or "?")
        if content.get("algorithm") != MEGOLM:
            await self._undecryptable(room_id, event_id, sender, device_id, "unknown algorithm")
            return None
        megolm = MegolmEvent.from_dict(event)
        if not isinstance(megolm, MegolmEvent):
            await self._undecryptable(room_id, event_id, sender, device_id, "malformed event")
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
                await self._next_sync(deadline - time.monotonic())
                continue
            else:
                return await self._checked(client, event, megolm, clear)
        if waitable:
            await self._request_key(client, megolm)
        first = self._first_failure.setdefault(event_id, time.monotonic())
        if not waitable or time.monotonic() - first >= self.give_up_seconds:
            await self._undecryptable(room_id, event_id, sender, device_id, reason)
            return None
        raise TransientError("room key not received yet")

    async def _checked(
        self, client: Any, event: dict[str, Any], megolm: Any, clear: Any
    ) -> dict[str, Any] | None:
        """Refuse what decrypts but does not hold together (wrong room, unknown device)."""
        room_id = str(event["room_id"])
        event_id = str(event["event_id"])
        sender = str(event.get("sender", ""))
        source: dict[str, Any] = clear.source if isinstance(clear.source, dict) else {}
        device_id = str(megolm.device_id or "?")
        if source.get("room_id", room_id) != room_id:
            log.warning("Encrypted event %s was encrypted for another room", event_id)
            await self._undecryptable(room_id, event_id, sender, device_id, "room mismatch")
            return None
        if not await self._sender_owns_key(client, sender, str(megolm.sender_key)):
            log.warning("Encrypted event %s: session not from a device of its sender", event_id)
            await self._undecryptable(room_id, event_id, sender, device_id, "unknown device")
            return None
        self._first_failure.pop(event_id, None)
        out = {
            "type": source.get("type"),
            "content": source.get("content") or {},
            "event_id": event_id,
            "room_id": room_id,
            "sender": sender,
            "origin_server_ts": event.get("origin_server_ts"),
            "unsigned": event.get("unsigned") or {},
        }
        return out

    async def _sender_owns_key(self, client: Any, sender: str, curve25519: str) -> bool:
        """Whether the Megolm session came from one of the sender's own devices."""
        for attempt in range(2):
            for device in client.device_store.active_user_devices(sender):
                if device.curve25519 == curve25519:
                    return True
            if attempt == 0:
                client.olm.users_for_key_query.add(sender)
                async with self._keys_lock:
                    if client.should_query_keys:
                        resp = await client.keys_query()
                        if isinstance(resp, KeysQueryError):
                            raise TransientError(f"key query failed: {resp.status_code}")
        return False

    async def _request_key(self, client: Any, megolm: Any) -> None:
        """Ask the sending device for the room key (once per session).

        nio's ``request_room_key`` asks only our own devices (the bot has no other), so the
        request goes to the device named in the event; its re-share arrives as an
        ``m.forwarded_room_key``, which ``_accept_forward`` lets in.
        """
        session_id = str(megolm.session_id)
        if session_id in self._key_requests:
            return
        self._key_requests[session_id] = (
            str(megolm.sender),
            str(megolm.sender_key),
            str(megolm.room_id),
        )
        message = megolm.as_key_request(
            megolm.sender, client.device_id, session_id, megolm.device_id
        )
        # Queued first, so nio records the request once it is sent (and expects the key).
        client.olm.outgoing_to_device_messages.append(message)
        with contextlib.suppress(LocalProtocolError):
            await client.to_device(message)

    def _install_forward_policy(self, olm: Any) -> None:
        """Also accept forwarded keys from the device that created the session.

        nio only accepts forwarded room keys from the user's own verified devices; the
        bot has none, and the device it asked (see ``_request_key``) is the session's own
        creator, which could have sent the plain ``m.room_key`` just as well.
        """
        default = olm._should_accept_forward
        requests = self._key_requests

        def accept(sender: str, sender_key: str, event: Any) -> bool:
            asked = requests.get(str(event.session_id))
            if (
                asked is not None
                and asked == (sender, sender_key, str(event.room_id))
                and event.algorithm == MEGOLM
                and event.session_id in olm.outgoing_key_requests
            ):
                return True
            return bool(default(sender, sender_key, event))

        olm._should_accept_forward = accept

    async def _undecryptable(
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
        self._record_undecryptable(room_id, sender, device_id)
        self._first_failure.pop(event_id, None)

    def _record_undecryptable(self, room_id: str, sender: str, device_id: str) -> None:
        path = self._store / UNDECRYPTABLE_FILE
        data = read_json(path)
        data = data if isinstance(data, dict) else {}
        room = data.setdefault(room_id, {})
        key = f"{sender}|{device_id}"
        entry = room.get(key) or {"sender": sender, "device_id": device_id, "count": 0}
        entry["count"] = int(entry.get("count", 0)) + 1
        entry["last_failure_ms"] = int(time.time() * 1000)
        room[key] = entry
        if len(room) > _MAX_UNDECRYPTABLE_PER_ROOM:
            oldest = sorted(room, key=lambda k: room[k]["last_failure_ms"])
            for k in oldest[: len(room) - _MAX_UNDECRYPTABLE_PER_ROOM]:
                del room[k]
        write_private_json(path, data)

    def undecryptable(self, room_id: str) -> tuple[UndecryptableDevice, ...]:
        data = read_json(self._store / UNDECRYPTABLE_FILE)
        room = data.get(room_id, {}) if isinstance(data, dict) else {}
        found = [
            UndecryptableDevice(
                str(e["sender"]), str(e["device_id"]), int(e["count"]), int(e["last_failure_ms"])
            )
            for e in room.values()
        ]
        return tuple(sorted(found, key=lambda d: -d.last_failure_ms))

    # -- encryption ------------------------------------------------------------------

    def note_encryption(self, room_id: str) -> None:
        """The room is encrypted (seen ``m.room.encryption`` or an encrypted event)."""
        self._encrypted.add(room_id)

    async def is_encrypted(self, room_id: str) -> bool:
        """Whether replies to the room must be encrypted.

        Only "encrypted" is cached (encryption can never be turned off); "clear" is asked
        of the homeserver every time, since the room may have just been encrypted by
        someone else, or by the gate, and a stale "clear" would leak a reply.
        """
        if room_id in self._encrypted:
            return True
        client = self._client
        room = client.rooms.get(room_id) if client is not None else None
        if (room is not None and room.encrypted) or (
            await self._room_algorithm(room_id)
        ) is not None:
            self.note_encryption(room_id)
            return True
        return False

    async def _room_algorithm(self, room_id: str) -> str | None:
        """The room's ``m.room.encryption`` algorithm, asked of the homeserver."""
        token = self._token or self._as_token
        params = None if self._token else {"user_id": self.user_id}
        status, content = await self._api.request(
            "GET",
            f"/rooms/{q(room_id)}/state/m.room.encryption/",
            token=token,
            params=params,
            ok=(200, 404),
        )
        if status == 404:
            return None
        return str(content.get("algorithm") or "")

    async def room_encryption(self, room_id: str) -> RoomEncryption:
        algorithm = await self._room_algorithm(room_id)
        if algorithm is not None:
            self.note_encryption(room_id)
        return RoomEncryption(
            encrypted=algorithm is not None,
            algorithm=algorithm or None,
            bot_device_id=self.device_id,
            cross_signed=self.cross_signed,
            undecryptable=self.undecryptable(room_id),
        )

    async def send_encrypted(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        """Encrypt and send; the room key goes only to devices of allowed members."""
        client = await self._wait_ready()
        lock = self._room_locks.setdefault(room_id, asyncio.Lock())
        async with lock:
            room = await self._synced_room(client, room_id)
            allowed = await self._apply_policy(client, room)
            if client.olm.should_share_group_session(room_id):
                await self._share_room_key(client, room_id, allowed)
            enc_type, encrypted = client.encrypt(room_id, event_type, content)
            _, body = await self._api.request(
                "PUT",
                f"/rooms/{q(room_id)}/send/{q(enc_type)}/{uuid.uuid4().hex}",
                token=self._token,
                json=encrypted,
            )
        return str(body["event_id"])

    async def _synced_room(self, client: Any, room_id: str) -> Any:
        """nio's view of the room, once it knows the room is encrypted and its members."""
        deadline = time.monotonic() + _ROOM_WAIT_SECONDS
        room = client.rooms.get(room_id)
        while room is None or not room.encrypted:
            if time.monotonic() >= deadline:
                raise TransientError("the encrypted device has not synced the room yet")
            await self._next_sync(deadline - time.monotonic())
            room = client.rooms.get(room_id)
        if not room.members_synced:
            resp = await client.joined_members(room_id)
            if isinstance(resp, JoinedMembersError):
                raise TransientError(f"could not list the room's members: {resp.status_code}")
        async with self._keys_lock:
            if client.should_query_keys:
                resp = await client.keys_query()
                if isinstance(resp, KeysQueryError):
                    raise TransientError(f"key query failed: {resp.status_code}")
        return room

    async def _apply_policy(self, client: Any, room: Any) -> list[str]:
        """Blacklist the known devices of members the policy refuses; return the others.

        Blacklisting (or lifting it) makes nio rotate the room's outbound session, so a
        member refused now never gets the key of anything sent from now on.
        """
        allowed: list[str] = []
        for user_id in list(room.users):
            if user_id == self.user_id:
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

    async def _share_room_key(self, client: Any, room_id: str, users: list[str]) -> None:
        """nio's ``share_group_session`` restricted to ``users`` (nio shares with everyone)."""
        olm = client.olm
        async with self._keys_lock:
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
                    token=self._token,
                    json=to_device,
                )
                olm.outbound_group_sessions[room_id].users_shared_with.update(sharing_with)
            olm.outbound_group_sessions[room_id].shared = True

    async def whoami_device(self) -> str:
        """The device ID the homeserver associates with our token (tests, diagnostics)."""
        resp = await self._client.whoami()
        if isinstance(resp, WhoamiError):
            raise CryptoError(f"whoami failed: {resp.status_code}")
        return str(resp.device_id)
