"""`!sg report` through the real command dispatcher, and the file sender (encrypted or not)."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.e2ee.attachments import decrypt_attachment, encrypt_attachment
from bridge.report.commands import ReportCommands
from bridge.report.model import ReportData
from bridge.report.upload import RoomFileSender, UploadError
from tests.bot.harness import ADMIN, ROOM_ADMIN, FakeClock, FakeServices, Room, make_room
from tests.report.sample import report, rooms, translator


class Source:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def gather(self, language: str) -> ReportData:
        self.asked.append(language)
        return report(language)


class Uploads:
    def __init__(self, fail: Exception | None = None) -> None:
        self.files: list[tuple[str, str, bytes, str]] = []
        self.fail = fail

    async def upload_file(self, room_id: str, filename: str, data: bytes, mimetype: str) -> str:
        if self.fail is not None:
            raise self.fail
        self.files.append((room_id, filename, data, mimetype))
        return "$file"


def room_with(uploads: Uploads, source: Source, *, admin_room: bool = True) -> Room:
    admin_rooms: set[str] = set()
    commands = ReportCommands(source=source, upload=uploads, is_admin_room=admin_rooms.__contains__)
    room = make_room(commands, translator=translator(), clock=FakeClock(), services=FakeServices())
    if admin_room:
        admin_rooms.add(room.room_id)
    return room


async def test_report_is_sent_to_the_admin_room_with_a_summary() -> None:
    uploads, source = Uploads(), Source()
    room = room_with(uploads, source)
    reply = await room.ask("!sg report", ADMIN)
    assert source.asked == ["fr"]
    [(room_id, filename, data, mimetype)] = uploads.files
    assert room_id == room.room_id and mimetype == "text/html"
    assert filename == "santeguard-rapport-dpo-2025-03-14-0930.html"
    page = data.decode("utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<html lang="fr">' in page
    assert all(f'data-room-id="{r.room_id}"' in page for r in rooms())
    assert "Rapport DPO envoyé : 6 salon(s)" in reply
    assert "2 prouvée(s), 1 en violation, 1 non prouvable(s), 2 jamais auditée(s)" in reply
    assert "Journal d'audit : intact" in reply


async def test_english_room_gets_an_english_report() -> None:
    uploads, source = Uploads(), Source()
    room = room_with(uploads, source)
    room.services.languages[room.room_id] = "en"
    reply = await room.ask("!sg rapport", ADMIN)
    assert source.asked == ["en"] and reply.startswith("DPO report sent: 6 room(s)")
    assert uploads.files[0][1] == "santeguard-dpo-report-2025-03-14-0930.html"
    assert '<html lang="en">' in uploads.files[0][2].decode("utf-8")


async def test_only_in_the_admin_room() -> None:
    uploads, source = Uploads(), Source()
    room = room_with(uploads, source, admin_room=False)
    reply = await room.ask("!sg report", ADMIN)
    assert reply == "Le rapport DPO s'obtient uniquement dans le salon d'administration."
    assert uploads.files == [] and source.asked == []


async def test_only_network_admins() -> None:
    uploads, source = Uploads(), Source()
    room = room_with(uploads, source)
    reply = await room.ask("!sg report", ROOM_ADMIN)  # a room admin is not a network admin
    assert "Permission refusée" in reply
    assert uploads.files == [] and source.asked == []


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (UploadError("encrypted_no_device"), "jamais envoyé en clair"),
        (RuntimeError("homeserver said 500"), "le serveur Matrix a refusé l'envoi"),
    ],
)
async def test_upload_failure_is_told(error: Exception, said: str) -> None:
    room = room_with(Uploads(fail=error), Source())
    reply = await room.ask("!sg report", ADMIN)
    assert reply.startswith("Le rapport DPO n'a pas pu être envoyé dans ce salon")
    assert said in reply and "500" not in reply


# -- the file sender -----------------------------------------------------------------


class Matrix:
    def __init__(self, encrypted: bool) -> None:
        self.encrypted = encrypted
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    async def send_event(
        self, room_id: str, event_type: str, content: dict[str, Any], *, txn_id: str | None = None
    ) -> str:
        self.sent.append((room_id, event_type, content))
        return "$clear"

    async def encryption_state(self, room_id: str) -> dict[str, Any] | None:
        return {"algorithm": "m.megolm.v1.aes-sha2"} if self.encrypted else None


class Device:
    def __init__(self, encrypted: bool) -> None:
        self.encrypted = encrypted
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    async def is_encrypted(self, room_id: str) -> bool:
        return self.encrypted

    async def send_encrypted(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        self.sent.append((room_id, event_type, content))
        return "$encrypted"


class Media:
    def __init__(self) -> None:
        self.uploads: list[tuple[bytes, str, str]] = []

    async def upload(
        self, data: bytes, content_type: str, filename: str, *, user_id: str | None = None
    ) -> str:
        self.uploads.append((data, content_type, filename))
        return f"mxc://chu-exemple.fr/m{len(self.uploads)}"


DATA = b"<!DOCTYPE html><html lang='fr'>rapport</html>"


async def test_encrypted_room_gets_an_encrypted_file() -> None:
    matrix, device, media = Matrix(True), Device(True), Media()
    sender = RoomFileSender(matrix, media, encrypt_attachment, device, matrix)
    assert await sender.upload_file("!admin:x", "r.html", DATA, "text/html") == "$encrypted"
    [(cipher, content_type, name)] = media.uploads
    assert cipher != DATA and content_type == "application/octet-stream" and name == ""
    [(room, event_type, content)] = device.sent
    assert (room, event_type, matrix.sent) == ("!admin:x", "m.room.message", [])
    assert "url" not in content and content["file"]["url"] == "mxc://chu-exemple.fr/m1"
    assert content["msgtype"] == "m.file" and content["info"]["mimetype"] == "text/html"
    assert decrypt_attachment(cipher, content["file"]) == DATA


async def test_clear_room_gets_the_file_as_is() -> None:
    matrix, device, media = Matrix(False), Device(False), Media()
    sender = RoomFileSender(matrix, media, encrypt_attachment, device, matrix)
    assert await sender.upload_file("!admin:x", "r.html", DATA, "text/html") == "$clear"
    assert media.uploads == [(DATA, "text/html", "")]
    [(_, _, content)] = matrix.sent
    assert content["url"] == "mxc://chu-exemple.fr/m1" and "file" not in content


async def test_encrypted_room_without_a_device_gets_nothing() -> None:
    matrix, media = Matrix(True), Media()
    sender = RoomFileSender(matrix, media, encrypt_attachment, None, matrix)
    with pytest.raises(UploadError) as err:
        await sender.upload_file("!admin:x", "r.html", DATA, "text/html")
    assert err.value.reason == "encrypted_no_device"
    assert media.uploads == [] and matrix.sent == []
