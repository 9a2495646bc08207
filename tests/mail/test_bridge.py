"""The mail bridge end to end: Element-like practitioners (matrix-nio) in a protected,
encrypted room; a real Synapse; the relay (aiosmtpd, STARTTLS + client certificates) and
the application mailbox (Dovecot, IMAP over TLS + client certificates).

Room → SMTP → the correspondent replies → SMTP → IMAP → room, threads kept, files both
ways encrypted in the room, read receipts both ways, and what must be refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from nio import RoomEncryptedFile, RoomMessageText

from bridge.devtools.maillab import CORRESPONDENT, FileToSend, MailLab
from bridge.devtools.nio_peer import NioPeer, notice_from
from bridge.devtools.people import practitioner
from bridge.devtools.stack import DevStack
from bridge.mail.policy import message_id_for

pytestmark = pytest.mark.synapse

Lab = tuple[DevStack, MailLab]


async def _until(check: Any, timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def doctor(mail_stack: Lab, tmp_path: Path) -> AsyncIterator[NioPeer]:
    stack, _ = mail_stack
    n = time.monotonic_ns() % 10_000_000
    user, _client = await stack.practitioner(f"doc{n}", practitioner(n, last="Curie", first="Marie"))
    peer = NioPeer(
        stack.synapse.base_url, user.user_id, user.device_id, user.access_token, tmp_path / "doc"
    )
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()


async def _linked_room(stack: DevStack, peer: NioPeer, address: str = CORRESPONDENT) -> str:
    room = await peer.create_encrypted_room(invite=(stack.bot_mxid,), name="RCP cardio")
    await peer.wait_for_member(room, stack.bot_mxid)
    since = peer.mark(room)
    await peer.send_text(room, f"!sg mail link {address}")
    await peer.wait_for(room, notice_from(stack.bot_mxid, address), since=since, timeout=30)
    return room


def _outside_for(lab: MailLab, message_id: str) -> EmailMessage | None:
    for msg in lab.outside():
        if str(msg["Message-ID"]) == message_id:
            return msg
    return None


async def test_round_trip_threads_files_and_receipts(mail_stack: Lab, doctor: NioPeer) -> None:
    stack, lab = mail_stack
    bot = stack.bot_mxid
    room = await _linked_room(stack, doctor)

    # Room → mail: a text message and an encrypted file.
    since = doctor.mark(room)
    first = await doctor.send_text(room, "Bonjour, avis cardio pour Mme X ?")
    first_id = message_id_for(first, "cpts.mssante.test")
    out = await _until(lambda: _outside_for(lab, first_id), what="the first mail at the relay")
    assert "Marie Curie" in str(out["From"]) and "RPPS" in str(out["From"])
    assert "cpts@cpts.mssante.test" in str(out["From"])
    assert str(out["To"]) == CORRESPONDENT
    assert "+" in str(out["Reply-To"])
    assert str(out["Subject"]) == "RCP cardio"
    body = out.get_body(("plain",))
    assert body is not None and "avis cardio" in body.get_content()
    await doctor.wait_for(room, notice_from(bot, "✓"), since=since, timeout=30)

    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 40
    file_event = await doctor.send_file(room, pdf, "ecg.pdf", "application/pdf")
    file_id = message_id_for(file_event, "cpts.mssante.test")
    mailed = await _until(lambda: _outside_for(lab, file_id), what="the file's mail")
    parts = [p for p in mailed.iter_attachments()]
    assert [p.get_filename() for p in parts] == ["ecg.pdf"]
    assert parts[0].get_content() == pdf  # decrypted from the room, exact bytes
    # One thread: the second mail answers the first.
    assert first_id in str(mailed["References"])

    # Mail → room: the correspondent replies with an attachment and asks for a receipt.
    since = doctor.mark(room)
    reply_id = await lab.reply(
        mailed,
        "Vu, ECG normal. Compte rendu joint.",
        files=[FileToSend("cr.txt", "text/plain", "Compte rendu\n".encode())],
        ask_receipt=True,
    )

    def from_ghost(event: Any) -> bool:
        return isinstance(event, RoomMessageText) and "ECG normal" in event.body

    text = await doctor.wait_for(room, from_ghost, since=since, timeout=60)
    assert text.sender.startswith("@santeguard_mail_dr.durand=40chu-exemple")
    assert text.decrypted, "the reply must arrive encrypted in an encrypted room"
    got_file = await doctor.wait_for(
        room, lambda e: isinstance(e, RoomEncryptedFile), since=since, timeout=30
    )
    assert got_file.body == "cr.txt"
    assert await doctor.download_decrypted(got_file) == b"Compte rendu\n"

    # No receipt before a practitioner read it; one once they did.
    await asyncio.sleep(1)
    assert not [m for m in lab.outside() if m.get_content_type() == "multipart/report"]
    await doctor.read_up_to(room, got_file.event_id)
    mdn = await _until(
        lambda: [m for m in lab.outside() if m.get_content_type() == "multipart/report"],
        what="the read receipt (MDN)",
    )
    assert reply_id in mdn[0].as_string()

    # Threads both ways: the next message answers the correspondent's reply.
    third = await doctor.send_text(room, "Merci !")
    third_mail = await _until(
        lambda: _outside_for(lab, message_id_for(third, "cpts.mssante.test")),
        what="the third mail",
    )
    assert str(third_mail["In-Reply-To"]).strip() == reply_id


async def test_linking_an_address_off_the_allowlist_is_refused(
    mail_stack: Lab, doctor: NioPeer
) -> None:
    stack, lab = mail_stack
    room = await doctor.create_encrypted_room(invite=(stack.bot_mxid,))
    await doctor.wait_for_member(room, stack.bot_mxid)
    since = doctor.mark(room)
    await doctor.send_text(room, "!sg mail link someone@gmail.com")
    await doctor.wait_for(room, notice_from(stack.bot_mxid, "liste blanche"), since=since)
    before = len(lab.outside())
    await doctor.send_text(room, "ne doit pas sortir")
    await asyncio.sleep(2)
    assert len(lab.outside()) == before


async def test_unknown_and_hostile_mail_is_quarantined_never_posted(
    mail_stack: Lab, doctor: NioPeer
) -> None:
    stack, lab = mail_stack
    assert stack.santeguard is not None
    store = stack.santeguard.mail.store
    unknown = (
        b"From: Dr X <x@chu-exemple.mssante.test>\r\nTo: cpts@cpts.mssante.test\r\n"
        b"Subject: hello\r\nMessage-ID: <unknown-1@chu-exemple.mssante.test>\r\n\r\nhi\r\n"
    )
    outsider = unknown.replace(b"x@chu-exemple.mssante.test", b"spam@gmail.com").replace(
        b"unknown-1", b"outsider-1"
    )
    loop = unknown.replace(b"unknown-1", b"loop-1").replace(
        b"Subject: hello", b"Subject: Absent\r\nAuto-Submitted: auto-replied"
    )
    assert lab.dovecot is not None
    for raw in (unknown, outsider, loop):
        await lab.dovecot.deliver(raw)

    async def outcomes() -> dict[str, str]:
        rows = await store.db.fetch("SELECT message_id, status, reason FROM mail_inbound")
        return {str(r["message_id"]): f"{r['status']}:{r['reason']}" for r in rows}

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seen = await outcomes()
        if len([k for k in seen if k.split("@")[0] in ("<unknown-1", "<outsider-1", "<loop-1")]) == 3:
            break
        await asyncio.sleep(0.2)
    seen = await outcomes()
    assert seen["<unknown-1@chu-exemple.mssante.test>"] == "quarantined:unknown_room"
    assert seen["<outsider-1@chu-exemple.mssante.test>"] == "quarantined:sender_not_allowed"
    assert seen["<loop-1@chu-exemple.mssante.test>"] == "refused:auto_submitted"
    reasons = {r for _, _, r, _ in await store.quarantined()}
    assert {"unknown_room", "sender_not_allowed"} <= reasons
