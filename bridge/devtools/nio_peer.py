"""A practitioner's end-to-end encrypted client (matrix-nio, vodozemac), for tests and
benchmarks: creates encrypted rooms, sends encrypted text and waits for decrypted replies.

Like Element, it shares its room keys with every device of the room's members without
verifying them (``ignore_unverified_devices``), and it keeps what it received, decrypted
when it could be, so a test can also check that something could *not* be decrypted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    MegolmEvent,
    RoomCreateError,
    RoomEncryptedFile,
    RoomEncryptedImage,
    RoomMessageFile,
    RoomMessageImage,
    RoomMessageNotice,
    RoomMessageText,
    RoomSendError,
    SyncError,
)
from nio.store import SqliteStore

log = logging.getLogger("santeguard.devtools.nio_peer")

Predicate = Callable[[Any], bool]


class NioPeer:
    """One logged-in device; ``start`` before use, ``stop`` after."""

    def __init__(
        self, base_url: str, user_id: str, device_id: str, access_token: str, store: Path
    ) -> None:
        store.mkdir(parents=True, exist_ok=True)
        self.user_id = user_id
        self.device_id = device_id
        self.client: Any = AsyncClient(
            base_url,
            user_id,
            device_id=device_id,
            store_path=str(store),
            config=AsyncClientConfig(store=SqliteStore, encryption_enabled=True),
        )
        self.client.restore_login(user_id, device_id, access_token)
        self.client.add_event_callback(self._on_event, (RoomMessageText, RoomMessageNotice))
        self.client.add_event_callback(
            self._on_event,
            (RoomEncryptedFile, RoomEncryptedImage, RoomMessageFile, RoomMessageImage),
        )
        self.client.add_event_callback(self._on_event, (MegolmEvent,))
        self.events: dict[str, list[Any]] = {}
        self.received_at: dict[str, float] = {}  # event ID -> perf_counter() on arrival
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.on_text: Callable[[str, Any], Any] | None = None

    async def __aenter__(self) -> NioPeer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        await self._sync(0)
        self._task = asyncio.create_task(self._loop(), name=f"nio-peer-{self.user_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.client.close()
        if self.client.store is not None:
            self.client.store.database.close()

    async def _loop(self) -> None:
        while True:
            try:
                await self._sync(5000)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("peer sync failed")
                await asyncio.sleep(0.5)

    async def _sync(self, timeout_ms: int) -> None:
        client = self.client
        resp = await client.sync(timeout=timeout_ms)
        if isinstance(resp, SyncError):
            raise RuntimeError(f"sync failed: {resp.status_code}")
        await client.send_to_device_messages()
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())
        async with self._changed:
            self._changed.notify_all()

    async def _on_event(self, room: Any, event: Any) -> None:
        self.received_at[event.event_id] = time.perf_counter()
        self.events.setdefault(room.room_id, []).append(event)
        if self.on_text is not None and isinstance(event, RoomMessageText):
            self.on_text(room.room_id, event)

    async def create_encrypted_room(self, invite: tuple[str, ...] = (), name: str = "") -> str:
        return await self.create_room(invite, name, encrypted=True)

    async def create_room(
        self, invite: tuple[str, ...] = (), name: str = "", *, encrypted: bool = True
    ) -> str:
        state = [
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }
        ]
        resp = await self.client.room_create(
            name=name or None, invite=list(invite), initial_state=state if encrypted else []
        )
        if isinstance(resp, RoomCreateError):
            raise RuntimeError(f"room creation failed: {resp.status_code} {resp.message}")
        return str(resp.room_id)

    async def join(self, room_id: str) -> None:
        await self.client.join(room_id)
        await self.wait_until(lambda: room_id in self.client.rooms)

    async def wait_until(self, check: Callable[[], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        async with self._changed:
            while not check():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("condition not met in time")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_for_member(self, room_id: str, user_id: str, timeout: float = 20) -> None:
        def joined() -> bool:
            room = self.client.rooms.get(room_id)
            return (
                room is not None and user_id in room.users and user_id not in (room.invited_users)
            )

        await self.wait_until(joined, timeout)

    async def send_text(self, room_id: str, body: str) -> str:
        resp = await self.client.room_send(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": body},
            ignore_unverified_devices=True,
        )
        if isinstance(resp, RoomSendError):
            raise RuntimeError(f"send failed: {resp.status_code} {resp.message}")
        return str(resp.event_id)

    async def send_notice(self, room_id: str, body: str) -> str:
        resp = await self.client.room_send(
            room_id,
            "m.room.message",
            {"msgtype": "m.notice", "body": body},
            ignore_unverified_devices=True,
        )
        if isinstance(resp, RoomSendError):
            raise RuntimeError(f"send failed: {resp.status_code} {resp.message}")
        return str(resp.event_id)

    async def send_file(
        self, room_id: str, data: bytes, filename: str, mimetype: str, msgtype: str = "m.file"
    ) -> str:
        """Upload ``data`` encrypted (as Element does in an encrypted room) and send it.

        As Element does, the upload names no file (the name travels in the encrypted event):
        a file name in the upload's query string would be in the homeserver's access log."""
        resp, keys = await self.client.upload(
            lambda *_: data,
            content_type="application/octet-stream",
            filename=None,
            encrypt=True,
            filesize=len(data),
        )
        url = getattr(resp, "content_uri", None)
        if url is None or keys is None:
            raise RuntimeError(f"upload failed: {resp}")
        content = {
            "msgtype": msgtype,
            "body": filename,
            "filename": filename,
            "info": {"mimetype": mimetype, "size": len(data)},
            "file": {**keys, "url": url},
        }
        sent = await self.client.room_send(
            room_id, "m.room.message", content, ignore_unverified_devices=True
        )
        if isinstance(sent, RoomSendError):
            raise RuntimeError(f"send failed: {sent.status_code} {sent.message}")
        return str(sent.event_id)

    async def download_decrypted(self, event: Any) -> bytes:
        """The clear bytes of a received encrypted file event."""
        from nio.crypto.attachments import decrypt_attachment

        resp = await self.client.download(mxc=event.url)
        body = getattr(resp, "body", None)
        if not isinstance(body, bytes):
            raise RuntimeError(f"download failed: {resp}")
        return bytes(decrypt_attachment(body, event.key["k"], event.hashes["sha256"], event.iv))

    async def read_up_to(self, room_id: str, event_id: str) -> None:
        """A public read receipt, as a client sends when its user has read the room."""
        await self.client.room_read_markers(room_id, event_id, event_id)

    def mark(self, room_id: str) -> int:
        """Position to wait from: events received before it are ignored by ``wait_for``."""
        return len(self.events.get(room_id, []))

    async def wait_for(
        self, room_id: str, predicate: Predicate, *, since: int = 0, timeout: float = 20
    ) -> Any:
        """The first event (decrypted, or a MegolmEvent if not) matching ``predicate``."""
        found: list[Any] = []

        def check() -> bool:
            for event in self.events.get(room_id, [])[since:]:
                if predicate(event):
                    found.append(event)
                    return True
            return False

        await self.wait_until(check, timeout)
        return found[0]


def notice_from(sender: str, fragment: str = "") -> Predicate:
    """A decrypted ``m.notice`` from ``sender`` whose body contains ``fragment``."""

    def match(event: Any) -> bool:
        return (
            isinstance(event, RoomMessageNotice)
            and event.sender == sender
            and fragment in event.body
        )

    return match
