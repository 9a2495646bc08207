"""The mail bridge end to end: Element-like practitioners (matrix-nio) in a protected,
encrypted room; a real Synapse; the relay (aiosmtpd, STARTTLS + client certificates) and
the application mailbox (Dovecot, IMAP over TLS + client certificates).

Room → SMTP → the correspondent replies → SMTP → IMAP → room, threads kept, files both
ways encrypted in the room, read receipts both ways, and what must be refused."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from nio import RoomEncryptedFile, RoomMessageNotice, RoomMessageText

from bridge.devtools.maillab import CORRESPONDENT, FileToSend, MailLab
from bridge.devtools.nio_peer import NioPeer, notice_from
from bridge.devtools.people import practitioner
from bridge.devtools.stack import DevStack
from bridge.mail.mdn import build_mdn
from bridge.mail.policy import message_id_for
from bridge.mail.xdm import unpack_xdm
from bridge.mail.xdm_build import build_xdm

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
    user, _client = await stack.practitioner(
        f"doc{n}", practitioner(n, last="Curie", first="Marie")
    )
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
        files=[FileToSend("cr.txt", "text/plain", b"Compte rendu\n")],
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
    own = message_id_for("$bounced", "cpts.mssante.test")
    echo = unknown.replace(b"<unknown-1@chu-exemple.mssante.test>", own.encode())
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(500))
    bomb = (
        unknown.replace(b"unknown-1", b"bomb-1").split(b"\r\n\r\n")[0]
        + b'\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        + parts
        + b"--b--\r\n"
    )
    assert lab.dovecot is not None
    for raw in (unknown, outsider, loop, echo, bomb):
        await lab.dovecot.deliver(raw)

    async def outcomes() -> dict[str, str]:
        rows = await store.db.fetch("SELECT message_id, status, reason FROM mail_inbound")
        return {str(r["message_id"]): f"{r['status']}:{r['reason']}" for r in rows}

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seen = await outcomes()
        expected = {"<unknown-1", "<outsider-1", "<loop-1", own.split("@")[0]}
        if expected <= {k.split("@")[0] for k in seen} and any(k.startswith("<raw.") for k in seen):
            break
        await asyncio.sleep(0.2)
    seen = await outcomes()
    assert seen["<unknown-1@chu-exemple.mssante.test>"] == "quarantined:unknown_room"
    assert seen["<outsider-1@chu-exemple.mssante.test>"] == "quarantined:sender_not_allowed"
    assert seen["<loop-1@chu-exemple.mssante.test>"] == "refused:auto_submitted"
    assert seen[own] == "refused:own_message"
    bombs = [v for k, v in seen.items() if k.startswith("<raw.")]
    assert bombs == ["quarantined:too_many_parts"]
    reasons = {r for _, _, r, _ in await store.quarantined()}
    assert {"unknown_room", "sender_not_allowed", "too_many_parts"} <= reasons


CDA = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3">'
    b"<title>Compte rendu de consultation</title></ClinicalDocument>\n"
)


def _tampered(package: bytes, name: str) -> bytes:
    """The same package with one document changed after its hash was written."""
    src = zipfile.ZipFile(io.BytesIO(package))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.lower().endswith("/" + name):
                data = data.replace(b"consultation", b"consultatioN")
            dst.writestr(info, data)
    return out.getvalue()


async def test_xdm_documents_both_ways(mail_stack: Lab, doctor: NioPeer) -> None:
    stack, lab = mail_stack
    bot = stack.bot_mxid
    room = await _linked_room(stack, doctor)
    first = await doctor.send_text(room, "Pouvez-vous m'envoyer le compte rendu ?")
    out = await _until(
        lambda: _outside_for(lab, message_id_for(first, "cpts.mssante.test")),
        what="the first mail",
    )

    # Inbound: a checked package becomes a document list and one file per document.
    package = build_xdm(
        [("cr.xml", "text/xml", CDA), ("ecg.pdf", "application/pdf", b"%PDF-1.4\n" * 50)],
        title="Consultation cardio",
        author="Claire Durand",
        when=datetime.now(UTC),
        unique_id="1.2.250.1.999.1",
    )
    since = doctor.mark(room)
    await lab.reply(out, "Ci-joint.", files=[FileToSend("IHE_XDM.ZIP", "application/zip", package)])

    def listing(e: Any) -> bool:
        return isinstance(e, RoomMessageNotice) and "IHE XDM" in e.body and "(2)" in e.body

    notice = await doctor.wait_for(room, listing, since=since, timeout=60)
    assert notice.sender.startswith("@santeguard_mail_") and "cr.xml" in notice.body
    names: dict[str, bytes] = {}
    for name in ("cr.xml", "ecg.pdf"):
        ev = await doctor.wait_for(
            room,
            lambda e, n=name: isinstance(e, RoomEncryptedFile) and e.body == n,
            since=since,
            timeout=30,
        )
        names[name] = await doctor.download_decrypted(ev)
    assert names == {"cr.xml": CDA, "ecg.pdf": b"%PDF-1.4\n" * 50}

    # A package that lies (a document's hash does not match) is refused, and said so.
    bad = _tampered(package, "cr.xml")
    since = doctor.mark(room)
    await lab.reply(out, "Version 2.", files=[FileToSend("IHE_XDM.ZIP", "application/zip", bad)])
    refused = await doctor.wait_for(
        room,
        lambda e: isinstance(e, RoomMessageNotice) and "IHE_XDM.ZIP" in e.body,
        since=since,
        timeout=60,
    )
    assert "refus" in refused.body

    # Outbound: `!sg mail xdm` lists the room's files and mails the chosen ones as a package.
    await doctor.send_file(room, CDA, "synthese.xml", "text/xml")
    since = doctor.mark(room)
    await doctor.send_text(room, "!sg mail xdm")
    await doctor.wait_for(room, notice_from(bot, "synthese.xml"), since=since, timeout=30)
    since = doctor.mark(room)
    await doctor.send_text(room, "!sg mail xdm 1")
    queued = await doctor.wait_for(room, notice_from(bot, "XDM"), since=since, timeout=30)
    message_id = "<" + queued.body.rsplit("<", 1)[1].split(">", 1)[0] + ">"
    mailed = await _until(lambda: _outside_for(lab, message_id), what="the XDM mail")
    [zipped] = [p for p in mailed.iter_attachments() if p.get_filename() == "IHE_XDM.ZIP"]
    unpacked = unpack_xdm(zipped.get_content())
    assert [d.data for d in unpacked.documents] == [CDA]
    assert unpacked.author is not None and "Curie" in unpacked.author


async def test_inbound_read_receipt_marks_the_message_read(
    mail_stack: Lab, doctor: NioPeer
) -> None:
    stack, lab = mail_stack
    room = await _linked_room(stack, doctor)
    sent = await doctor.send_text(room, "Résultats à lire, merci.")
    message_id = message_id_for(sent, "cpts.mssante.test")
    await _until(lambda: _outside_for(lab, message_id), what="the mail")
    mdn = build_mdn(
        original_message_id=message_id,
        original_subject="RCP cardio",
        original_headers=f"Message-ID: {message_id}\r\n",
        recipient=CORRESPONDENT,
        from_addr=CORRESPONDENT,
        to_addr="cpts@cpts.mssante.test",
        message_id="<mdn-1@chu-exemple.mssante.test>",
        date=datetime.now(UTC),
        disposition="displayed",
        manual=True,
    )
    await lab.send_raw(mdn, CORRESPONDENT, ["cpts@cpts.mssante.test"])

    def read_by_ghost() -> bool:
        receipts = doctor.client.rooms[room].read_receipts
        return any(
            user.startswith("@santeguard_mail_dr.durand") and r.event_id == sent
            for user, r in receipts.items()
        )

    await doctor.wait_until(read_by_ghost, timeout=60)


async def test_reply_reaches_a_room_where_the_bot_may_not_invite(
    mail_stack: Lab, doctor: NioPeer
) -> None:
    """A public room's preset asks power 50 to invite; the bot has 0: the enforcement user
    (100 everywhere) invites the correspondent's ghost instead of the mail being lost."""
    from nio import RoomCreateResponse, RoomPreset

    stack, lab = mail_stack
    resp = await doctor.client.room_create(
        preset=RoomPreset.public_chat,
        invite=[stack.bot_mxid],
        initial_state=[
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }
        ],
    )
    assert isinstance(resp, RoomCreateResponse)
    room = str(resp.room_id)
    await doctor.wait_for_member(room, stack.bot_mxid)
    since = doctor.mark(room)
    await doctor.send_text(room, f"!sg mail link {CORRESPONDENT}")
    await doctor.wait_for(room, notice_from(stack.bot_mxid, CORRESPONDENT), since=since)
    sent = await doctor.send_text(room, "Question publique")
    out = await _until(
        lambda: _outside_for(lab, message_id_for(sent, "cpts.mssante.test")), what="the mail"
    )
    since = doctor.mark(room)
    await lab.reply(out, "Réponse dans un salon public")
    got = await doctor.wait_for(
        room,
        lambda e: isinstance(e, RoomMessageText) and "salon public" in e.body,
        since=since,
        timeout=60,
    )
    assert got.sender.startswith("@santeguard_mail_")
