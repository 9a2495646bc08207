"""``BotDevice``: the one object the rest of SantéGuard holds for end-to-end encryption.

It owns the lifecycle (restore or create the device, publish its keys and cross-signed
identity, keep it syncing) and hands each job to a collaborator built around the same
nio client: ``Decryptor`` for incoming events, ``EncryptedSender`` for replies,
``EncryptedRooms`` for knowing which rooms need them, ``DeviceSync`` for the sync loop.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
from nio import AsyncClient, WhoamiError

from bridge.e2ee.cross_signing import CrossSigningKeys, publish
from bridge.e2ee.device.credentials import (
    close_client,
    device_signer,
    load_or_login,
    open_client,
    upload_keys,
)
from bridge.e2ee.device.dbstore import DeviceStoreDb
from bridge.e2ee.device.decrypt import Decryptor, UndecryptableNotice
from bridge.e2ee.device.key_requests import KeyRequests
from bridge.e2ee.device.rooms import EncryptedRooms
from bridge.e2ee.device.share import DeviceAllowed, EncryptedSender
from bridge.e2ee.device.sync import DeviceSync
from bridge.e2ee.device.undecryptable import UndecryptableLog
from bridge.e2ee.errors import CryptoError
from bridge.e2ee.files import ensure_private_dir, restrict_tree
from bridge.e2ee.http import HomeserverApi
from bridge.e2ee.status import RoomEncryption, UndecryptableDevice

log = logging.getLogger("santeguard.crypto")


class BotDevice:
    """The bot's one encrypted device. ``start`` once the bot user exists.

    ``device_allowed`` (required: there is no allow-all default) decides which members'
    devices get a room's keys; the application passes the gate's admission decision.
    With ``store_db``, the store is kept in the database (``encryption.store_in_database``):
    restored at ``start`` into ``store_path`` (then only a working copy), saved before each
    /sync request and at ``stop``.
    """

    def __init__(
        self,
        *,
        homeserver: str,
        user_id: str,
        as_token: str,
        session: aiohttp.ClientSession,
        store_path: Path,
        device_allowed: DeviceAllowed,
        display_name: str = "SantéGuard",
        key_wait_seconds: float = 2.0,
        give_up_seconds: float = 60.0,
        sync_timeout_ms: int = 30_000,
        verify_ssl: bool = True,
        on_undecryptable: UndecryptableNotice | None = None,
        store_db: DeviceStoreDb | None = None,
    ) -> None:
        self.homeserver = homeserver.rstrip("/")
        self.user_id = user_id
        self._as_token = as_token
        self._api = HomeserverApi(session, self.homeserver)
        self._store = Path(store_path)
        self._display_name = display_name
        self._verify_ssl = verify_ssl
        self._client: AsyncClient | None = None
        self._token = ""  # the device's access token, once started
        self.cross_signed = False
        self._store_db = store_db
        self._sync = DeviceSync(
            self._store, sync_timeout_ms, self._save if store_db is not None else None
        )
        self._key_requests = KeyRequests()
        self._undecryptable = UndecryptableLog(self._store)
        self._decryptor = Decryptor(
            sync=self._sync,
            key_requests=self._key_requests,
            undecryptable=self._undecryptable,
            key_wait_seconds=key_wait_seconds,
            give_up_seconds=give_up_seconds,
            on_undecryptable=on_undecryptable,
        )
        self._rooms = EncryptedRooms(self._api, user_id, as_token)
        self._sender = EncryptedSender(self._api, user_id, self._sync, device_allowed)

    # -- identity --------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._sync.ready

    @property
    def device_id(self) -> str | None:
        return str(self._client.device_id) if self._client is not None else None

    @property
    def fenced(self) -> bool:
        """Another replica took the stored device over: this one stopped syncing it."""
        return self._store_db is not None and self._store_db.fenced

    @property
    def identity_keys(self) -> dict[str, str]:
        """The device's curve25519 and ed25519 public keys."""
        if self._client is None or self._client.olm is None:
            return {}
        return dict(self._client.olm.account.identity_keys)

    # -- settings, held by the collaborator that uses them (tests change them live) --

    @property
    def device_allowed(self) -> DeviceAllowed:
        """Policy hook: may this user's devices receive the bot's room keys?"""
        return self._sender.device_allowed

    @device_allowed.setter
    def device_allowed(self, value: DeviceAllowed) -> None:
        self._sender.device_allowed = value

    @property
    def on_undecryptable(self) -> UndecryptableNotice | None:
        return self._decryptor.on_undecryptable

    @on_undecryptable.setter
    def on_undecryptable(self, value: UndecryptableNotice | None) -> None:
        self._decryptor.on_undecryptable = value

    @property
    def key_wait_seconds(self) -> float:
        """How long an event waits for the device, then for its room key, before a retry."""
        return self._decryptor.key_wait_seconds

    @key_wait_seconds.setter
    def key_wait_seconds(self, value: float) -> None:
        self._decryptor.key_wait_seconds = value

    @property
    def give_up_seconds(self) -> float:
        """How long an undecryptable event is retried before the room is told."""
        return self._decryptor.give_up_seconds

    @give_up_seconds.setter
    def give_up_seconds(self, value: float) -> None:
        self._decryptor.give_up_seconds = value

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Restore (or create once) the device, publish keys and identity, start syncing."""
        if self._sync.ready:
            return
        await self._close_client()  # left by a device stopped by fencing, if any
        ensure_private_dir(self._store)
        if self._store_db is not None:
            await self._store_db.restore(self._store)  # a StoreError stops here (fail closed)
        creds = await load_or_login(
            self._api,
            self._store,
            user_id=self.user_id,
            as_token=self._as_token,
            display_name=self._display_name,
        )
        client = open_client(
            self.homeserver, self.user_id, self._store, creds, verify_ssl=self._verify_ssl
        )
        self._key_requests.install_forward_policy(client.olm)
        self._client = client
        self._token = creds.access_token
        restrict_tree(self._store)
        try:
            await upload_keys(client)
            keys = CrossSigningKeys.load_or_create(self._store, self.user_id)
            await publish(
                self._api,
                keys,
                device_id=creds.device_id,
                device_token=self._token,
                as_token=self._as_token,
                device_sign_json=device_signer(client, self.user_id),
            )
            self.cross_signed = True
            # Full state on the first sync after a restart: nio keeps no room state on disk.
            await self._sync.once(client, 0, full_state=client.loaded_sync_token is not None)
        except BaseException:
            await self._close_client()
            raise
        restrict_tree(self._store)
        self._sync.run(client)
        log.info(
            "Encrypted device %s ready (ed25519 %s)",
            creds.device_id,
            self.identity_keys.get("ed25519"),
        )

    async def stop(self) -> None:
        await self._sync.stop()
        if self._store_db is not None and self._client is not None:
            try:
                await self._save()
            except Exception as e:  # StoreFenced included: never saved over a new leader
                # The last save (before the last /sync request) stands: nothing is lost.
                log.error("Encrypted device not saved at stop: %s", e)
        await self._close_client()

    async def _save(self) -> None:
        assert self._store_db is not None
        await self._store_db.checkpoint(self._store)

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await close_client(client)

    async def _wait_ready(self) -> AsyncClient:
        return await self._sync.wait_ready(self.key_wait_seconds)

    # -- decryption ------------------------------------------------------------------

    async def decrypt(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The clear event for an ``m.room.encrypted`` room event.

        Raises ``TransientError`` while the room key may still come (the dispatcher retries
        the event); after ``give_up_seconds`` records the sender's device, sends the room a
        notice through ``on_undecryptable`` and returns None. None also, at once, for an
        event this device encrypted itself (sent by a ghost with ``encrypt``).
        """
        client = await self._wait_ready()
        self.note_encryption(str(event["room_id"]))
        if self._encrypted_here(event):
            # Sent with a session of this very device, by another SantéGuard user (a mail
            # ghost, see ``encrypt``): nothing to read, and no "could not decrypt" notice.
            return None
        return await self._decryptor.decrypt(client, event)

    def _encrypted_here(self, event: dict[str, Any]) -> bool:
        content = event.get("content") or {}
        curve25519 = self.identity_keys.get("curve25519")
        return (
            curve25519 is not None
            and content.get("sender_key") == curve25519
            and content.get("device_id") == self.device_id
        )

    def undecryptable(self, room_id: str) -> tuple[UndecryptableDevice, ...]:
        return self._undecryptable.for_room(room_id)

    # -- encryption ------------------------------------------------------------------

    def note_encryption(self, room_id: str) -> None:
        """The room is encrypted (seen ``m.room.encryption`` or an encrypted event)."""
        self._rooms.note(room_id)

    async def is_encrypted(self, room_id: str) -> bool:
        """Whether replies to the room must be encrypted (a stale "no" would leak one)."""
        return await self._rooms.is_encrypted(room_id, self._client, self._token)

    async def room_encryption(self, room_id: str) -> RoomEncryption:
        algorithm = await self._rooms.algorithm(room_id, self._token)
        return RoomEncryption(
            encrypted=algorithm is not None,
            algorithm=algorithm or None,
            bot_device_id=self.device_id,
            cross_signed=self.cross_signed,
            undecryptable=self.undecryptable(room_id),
        )

    async def send_encrypted(
        self,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        txn_id: str | None = None,
    ) -> str:
        """Encrypt and send; the room key goes only to devices of allowed members."""
        client = await self._wait_ready()
        return await self._sender.send(
            client, self._token, room_id, event_type, content, txn_id=txn_id
        )

    async def encrypt(
        self, room_id: str, event_type: str, content: dict[str, Any]
    ) -> dict[str, Any]:
        """The ``m.room.encrypted`` content for another appservice user to send.

        Same room key and sharing rules as ``send_encrypted`` (the key goes only to devices
        of allowed members, first). A mail ghost sends the result as ``m.room.encrypted``;
        readers see the bot's device as the session's origin, not a device of the ghost.
        """
        client = await self._wait_ready()
        return await self._sender.encrypt(client, self._token, room_id, event_type, content)

    async def whoami_device(self) -> str:
        """The device ID the homeserver associates with our token (tests, diagnostics)."""
        if self._client is None:
            raise CryptoError("the encrypted device is not started")
        resp = await self._client.whoami()
        if isinstance(resp, WhoamiError):
            raise CryptoError(f"whoami failed: {resp.status_code}")
        return str(resp.device_id)
