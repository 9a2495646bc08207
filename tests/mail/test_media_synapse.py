"""Media and ghost-sent encrypted events against a real Synapse under SantéGuard's gate.

One protected network (``gated_stack``, SQLite only: the media repository and the bot's
device do not touch SantéGuard's database). A mail "ghost" is an appservice user
(``@santeguard_mail_…``): registered by the appservice, invited by the bot or a member,
joined with the appservice token; it uploads as itself and sends what the bot's device
encrypted, which a practitioner's client decrypts.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from nio import RoomEncryptedFile, RoomMessageNotice, RoomMessageText
from nio.crypto import attachments as nio_attachments

from bridge.devtools.nio_peer import NioPeer, notice_from
from bridge.devtools.people import practitioner
from bridge.devtools.stack import DevStack
from bridge.e2ee.attachments import decrypt_attachment, encrypt_attachment
from bridge.e2ee.device import BotDevice
from bridge.matrix.media import InvalidMxc, MediaClient, MediaError, MediaNotFound, MediaTooLarge

pytestmark = [
    pytest.mark.synapse,
    pytest.mark.parametrize("gated_stack", ["sqlite"], indirect=True),
]

_n = itertools.count()
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 64  # 16 KiB of every byte value


def _uniq(name: str) -> str:
    return f"{name}{time.monotonic_ns()}{next(_n)}"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _media(stack: DevStack, session: aiohttp.ClientSession) -> MediaClient:
    return MediaClient(session, stack.synapse.base_url, stack.as_token)


async def _ghost(stack: DevStack) -> str:
    """A mail ghost, registered by the appservice (masquerading needs the user to exist).

    The localpart escapes the address as ``bridge/mail/ghosts.py`` does (``@`` → ``=40``).
    """
    localpart = f"santeguard_mail_{_uniq('dr.martin')}=40chu.mssante.test"
    return await stack.synapse.register_appservice_user(stack.as_token, localpart)


async def _as_request(
    stack: DevStack,
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    user_id: str,
    body: Any = None,
) -> dict[str, Any]:
    """A client-server call as ``user_id`` through the appservice token (masquerading)."""
    async with session.request(
        method,
        f"{stack.synapse.base_url}/_matrix/client/v3{path}",
        params={"user_id": user_id},
        json=body,
        headers={"Authorization": f"Bearer {stack.as_token}"},
    ) as resp:
        data: dict[str, Any] = await resp.json()
        assert resp.status == 200, (resp.status, data)
        return data


async def _uploads_of(stack: DevStack, user_id: str) -> set[str]:
    token = await stack.synapse.admin_token()
    _, body = await stack.synapse.request(
        "GET", f"/_synapse/admin/v1/users/{quote(user_id)}/media", token=token
    )
    return {str(m["media_id"]) for m in body["media"]}


# -- media ---------------------------------------------------------------------------


async def test_upload_as_bot_and_as_ghost_then_download(
    gated_stack: DevStack, session: aiohttp.ClientSession
) -> None:
    media = _media(gated_stack, session)
    domain = gated_stack.server_name

    as_bot = await media.upload(PDF, "application/pdf", "compte-rendu.pdf")
    assert as_bot.startswith(f"mxc://{domain}/")
    assert await media.download(as_bot, max_bytes=len(PDF)) == PDF

    ghost = await _ghost(gated_stack)
    as_ghost = await media.upload(b"lettre", "text/plain", "lettre é.txt", user_id=ghost)
    assert await media.download(as_ghost, max_bytes=1000) == b"lettre"
    assert await _uploads_of(gated_stack, ghost) == {as_ghost.rsplit("/", 1)[1]}

    # What a ghost uploads, a practitioner's client downloads (authenticated media).
    user, _ = await gated_stack.user(_uniq("reader"))
    async with session.get(
        f"{gated_stack.synapse.base_url}/_matrix/client/v1/media/download/"
        f"{as_ghost.removeprefix('mxc://')}",
        headers={"Authorization": f"Bearer {user.access_token}"},
    ) as resp:
        assert resp.status == 200 and await resp.read() == b"lettre"


async def test_byte_cap_missing_media_and_bad_uris(
    gated_stack: DevStack, session: aiohttp.ClientSession
) -> None:
    media = _media(gated_stack, session)
    uri = await media.upload(PDF, "application/pdf", "cr.pdf")
    with pytest.raises(MediaTooLarge):
        await media.download(uri, max_bytes=len(PDF) - 1)
    with pytest.raises(MediaNotFound):
        await media.download(f"mxc://{gated_stack.server_name}/NoSuchMedia0000", max_bytes=10)
    for bad in (
        f"mxc://{gated_stack.server_name}/../../_synapse/admin/v1/users",
        f"mxc://{gated_stack.server_name}/{uri.rsplit('/', 1)[1]}?allow_remote=true",
    ):
        with pytest.raises(InvalidMxc):
            await media.download(bad, max_bytes=10)


async def test_masquerading_is_limited_to_registered_namespace_users(
    gated_stack: DevStack, session: aiohttp.ClientSession
) -> None:
    media = _media(gated_stack, session)
    outsider, _ = await gated_stack.user(_uniq("outsider"))
    with pytest.raises(MediaError) as e:
        await media.upload(b"x", "text/plain", "a.txt", user_id=outsider.user_id)
    assert e.value.reason == "refused" and e.value.status == 403
    unregistered = f"@{_uniq('santeguard_mail_')}:{gated_stack.server_name}"
    with pytest.raises(MediaError) as e:
        await media.upload(b"x", "text/plain", "a.txt", user_id=unregistered)
    assert e.value.reason == "refused"


# -- a ghost sends what the bot's device encrypted -----------------------------------


@pytest.fixture
async def doctor(gated_stack: DevStack, tmp_path: Path) -> AsyncIterator[NioPeer]:
    """A verified practitioner on matrix-nio (the gate admits her, so she gets keys)."""
    who = practitioner(6161_00000 + next(_n), last="MAILTEST", first="Claire")
    user, client = await gated_stack.practitioner(_uniq("claire"), who)
    await client.close()
    peer = NioPeer(
        gated_stack.synapse.base_url,
        user.user_id,
        user.device_id,
        user.access_token,
        tmp_path / "claire",
    )
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()


def _crypto(stack: DevStack) -> BotDevice:
    assert stack.santeguard is not None and stack.santeguard.crypto is not None
    return stack.santeguard.crypto


@pytest.mark.parametrize("inviter", ["bot", "member"])
async def test_ghost_sends_bot_encrypted_messages_a_practitioner_decrypts(
    gated_stack: DevStack, session: aiohttp.ClientSession, doctor: NioPeer, inviter: str
) -> None:
    stack = gated_stack
    crypto = _crypto(stack)
    ghost = await _ghost(stack)
    files: list[Any] = []

    async def on_file(room: Any, event: Any) -> None:
        files.append(event)

    doctor.client.add_event_callback(on_file, (RoomEncryptedFile,))

    # A protected, encrypted room with the bot. The ghost is invited by the bot (through
    # the appservice) or by the member; the gate lets it in as one of SantéGuard's own
    # users (``@santeguard_*`` is exempt) and it joins through the appservice.
    invite = (stack.bot_mxid,) if inviter == "bot" else (stack.bot_mxid, ghost)
    room = await doctor.create_encrypted_room(invite=invite)
    await doctor.wait_for_member(room, stack.bot_mxid)
    if inviter == "bot":
        await _as_request(
            stack,
            session,
            "POST",
            f"/rooms/{quote(room)}/invite",
            stack.bot_mxid,
            {"user_id": ghost},
        )
    await _as_request(stack, session, "POST", f"/join/{quote(room)}", ghost, {})
    await doctor.wait_for_member(room, ghost)
    assert stack.santeguard is not None
    assert stack.santeguard.gatekeeper.is_protected(room)

    since = doctor.mark(room)
    text = {"msgtype": "m.text", "body": "Courriel de dr.martin@mssante.test : résultat"}
    encrypted = await crypto.encrypt(room, "m.room.message", dict(text))
    assert encrypted["algorithm"] == "m.megolm.v1.aes-sha2"
    assert "résultat" not in str(encrypted)
    sent = await _as_request(
        stack,
        session,
        "PUT",
        f"/rooms/{quote(room)}/send/m.room.encrypted/{uuid.uuid4().hex}",
        ghost,
        encrypted,
    )
    event = await doctor.wait_for(
        room,
        lambda ev: isinstance(ev, RoomMessageText) and ev.event_id == sent["event_id"],
        since=since,
    )
    assert event.decrypted and event.sender == ghost
    assert event.source["content"] == text
    assert event.sender_key == crypto.identity_keys["curve25519"]

    # An attachment: encrypted, uploaded as the ghost, sent as an encrypted m.file.
    ciphertext, file_info = encrypt_attachment(PDF)
    media = _media(stack, session)
    file_info["url"] = await media.upload(
        ciphertext, "application/octet-stream", "cr.pdf", user_id=ghost
    )
    content = {
        "msgtype": "m.file",
        "body": "cr.pdf",
        "filename": "cr.pdf",
        "info": {"mimetype": "application/pdf", "size": len(PDF)},
        "file": file_info,
        "m.relates_to": {"m.in_reply_to": {"event_id": sent["event_id"]}},
    }
    encrypted = await crypto.encrypt(room, "m.room.message", content)
    # The relation stays visible to the homeserver (spec), the file key does not.
    assert encrypted["m.relates_to"] == content["m.relates_to"]
    assert file_info["key"]["k"] not in str(encrypted)
    await _as_request(
        stack,
        session,
        "PUT",
        f"/rooms/{quote(room)}/send/m.room.encrypted/{uuid.uuid4().hex}",
        ghost,
        encrypted,
    )
    await doctor.wait_until(lambda: bool(files))
    (received,) = files
    assert received.decrypted and received.sender == ghost
    assert received.source["content"] == content
    # The practitioner's side: download the ciphertext with her own token, decrypt.
    async with session.get(
        f"{stack.synapse.base_url}/_matrix/client/v1/media/download/"
        f"{received.url.removeprefix('mxc://')}",
        headers={"Authorization": f"Bearer {doctor.client.access_token}"},
    ) as resp:
        downloaded = await resp.read()
    assert downloaded == ciphertext
    clear = nio_attachments.decrypt_attachment(
        downloaded, received.key["k"], received.hashes["sha256"], received.iv
    )
    assert clear == PDF
    assert decrypt_attachment(downloaded, received.source["content"]["file"]) == PDF

    # The bot holds its tongue: the ghost's events are SantéGuard's own, not a
    # practitioner's message it failed to read. A room's events are handled in order, so
    # once the bot answers a later command it has handled the ghost's events.
    mark = doctor.mark(room)
    await doctor.send_text(room, "!sg ping")
    await doctor.wait_for(room, notice_from(stack.bot_mxid, "pong"), since=mark)
    notices = [
        ev.body
        for ev in doctor.events.get(room, [])
        if isinstance(ev, RoomMessageNotice) and "déchiffrer" in ev.body
    ]
    assert notices == []
    assert crypto.undecryptable(room) == ()
