"""Sends a file to a room as the bot: encrypted (``EncryptedFile``) in an encrypted room.

The ``upload_file`` port of ``ReportCommands``. In an encrypted room the bytes are
encrypted (AES-CTR, ``encrypt_file``) before upload and the key travels only inside the
Megolm-encrypted event; without the bot's encrypted device the file is not sent at all,
never in clear to an encrypted room.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

FileEncryptor = Callable[[bytes], tuple[bytes, dict[str, Any]]]


class UploadError(Exception):
    """``reason``: a ``report.upload.*`` text key suffix."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EventSender(Protocol):
    async def send_event(
        self, room_id: str, event_type: str, content: dict[str, Any], *, txn_id: str | None = None
    ) -> str: ...


class RoomEncryptor(Protocol):
    async def is_encrypted(self, room_id: str) -> bool: ...
    async def send_encrypted(
        self, room_id: str, event_type: str, content: dict[str, Any]
    ) -> str: ...


class MediaUploader(Protocol):
    async def upload(
        self, data: bytes, content_type: str, filename: str, *, user_id: str | None = None
    ) -> str: ...


class EncryptionState(Protocol):
    async def encryption_state(self, room_id: str) -> dict[str, Any] | None: ...


class RoomFileSender:
    """``upload_file(room_id, filename, data, mimetype) -> event_id``.

    ``room_state`` tells whether a room is encrypted when there is no ``encryptor`` (the
    bot has no device): then an encrypted room gets nothing.
    """

    def __init__(
        self,
        sender: EventSender,
        media: MediaUploader,
        encrypt_file: FileEncryptor,
        encryptor: RoomEncryptor | None,
        room_state: EncryptionState,
    ) -> None:
        self._sender = sender
        self._media = media
        self._encrypt = encrypt_file
        self._encryptor = encryptor
        self._state = room_state

    async def upload_file(self, room_id: str, filename: str, data: bytes, mimetype: str) -> str:
        content: dict[str, Any] = {
            "msgtype": "m.file",
            "body": filename,
            "filename": filename,
            "info": {"mimetype": mimetype, "size": len(data)},
            "m.mentions": {},
        }
        encryptor = self._encryptor
        if encryptor is not None and await encryptor.is_encrypted(room_id):
            cipher, file_info = self._encrypt(data)
            # No name in the upload: the query string is in the homeserver's access log.
            url = await self._media.upload(cipher, "application/octet-stream", "")
            content["file"] = {**file_info, "url": url}
            return await encryptor.send_encrypted(room_id, "m.room.message", content)
        if encryptor is None and await self._state.encryption_state(room_id) is not None:
            raise UploadError("encrypted_no_device")
        content["url"] = await self._media.upload(data, mimetype, "")
        return await self._sender.send_event(room_id, "m.room.message", content)
