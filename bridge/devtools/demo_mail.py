"""The secure-mail part of `make demo`: a room linked to a local MSSanté-like mailbox.

A :class:`~bridge.devtools.maillab.MailLab` (certificates made now, an SMTP relay that
demands STARTTLS and a client certificate, Dovecot holding the application mailbox) is
started before SantéGuard, whose ``mail`` section points at it. In the demo's encrypted
room a verified practitioner links the room to a hospital correspondent, writes, and the
narration shows the mail as the relay received it; the correspondent then answers with an
IHE XDM package, which arrives in the room, encrypted, from the correspondent's ghost.

Without Dovecot (``make demo`` installs it) this part is skipped and said so.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol, TypeVar

from nio import RoomEncryptedFile, RoomMessageText

from bot.i18n import Translator
from bridge.devtools.client import SimpleClient
from bridge.devtools.dovecot import DOVECOT_BIN
from bridge.devtools.maillab import CORRESPONDENT, FileToSend, MailLab
from bridge.devtools.mailserver import Received
from bridge.devtools.nio_peer import NioPeer, notice_from
from bridge.devtools.stack import DevStack
from bridge.mail.ghosts import ghost_localpart
from bridge.mail.policy import message_id_for
from bridge.mail.xdm_build import build_xdm

T = TypeVar("T")
SHOWN_HEADERS = (
    "From", "To", "Reply-To", "Subject", "Message-ID", "In-Reply-To",
    "Disposition-Notification-To",
)  # fmt: skip


class Narration(Protocol):
    """What the demo's narrator offers (``demo.Narrator``; not imported: it imports us)."""

    lang: str
    text: Translator

    def say(self, key: str, **params: Any) -> None: ...


def new_lab(say: Narration, workdir: Path) -> MailLab | None:
    """The demo's mail service, not started yet; None (and said) without Dovecot."""
    if not DOVECOT_BIN.exists():
        say.say("mail_skipped", binary=DOVECOT_BIN)
        return None
    return MailLab(workdir / "mail")


async def start_lab(say: Narration, lab: MailLab) -> dict[str, Any]:
    """Start the relay and Dovecot; SantéGuard's ``mail`` config section pointing at them."""
    await lab.start()
    assert lab.relay is not None and lab.dovecot is not None
    say.say("mail_lab", smtp=lab.relay.port, imap=lab.dovecot.imap_port, mailbox=lab.mailbox)
    return lab.mail_config()


async def _until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value is not None:
            return value
        await asyncio.sleep(0.1)
    raise TimeoutError(f"demo step did not complete in time: {what}")


def _at_relay(lab: MailLab, message_id: str) -> tuple[Received, EmailMessage] | None:
    """The mail with ``message_id`` the relay accepted for the outside world, parsed."""
    assert lab.relay is not None
    for received in lab.relay.messages:
        if any(lab.is_mailbox(r) for r in received.rcpt_tos):
            continue
        msg = email.message_from_bytes(received.data, policy=email.policy.default)
        if isinstance(msg, EmailMessage) and str(msg.get("Message-ID", "")).strip() == message_id:
            return received, msg
    return None


def _one_line(text: str, limit: int = 160) -> str:
    flat = " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


async def scenario(
    stack: DevStack, say: Narration, lab: MailLab, peer: NioPeer, client: SimpleClient, who: str
) -> None:
    """Link a new room, mail a message out, bring the correspondent's XDM reply back in.

    A private room, as Element makes them: the bot invites the correspondent's ghost, which
    it may do there (the ``public_chat`` preset reserves invitations to power level 50).
    """
    bot = stack.bot_mxid
    domain = lab.mailbox.rsplit("@", 1)[1]
    name = say.text.t("mail_room_name", say.lang)
    say.say("mail_link", who=who, name=name, address=CORRESPONDENT)
    room = await peer.create_encrypted_room(invite=(bot,), name=name)
    await peer.wait_for_member(room, bot)
    await peer.wait_for(room, notice_from(bot, "!sg leave"), timeout=30)

    # Linking: a command typed in the encrypted room, answered encrypted.
    command = f"!sg mail link {CORRESPONDENT}"
    say.say("cmd", who=who, cmd=command)
    since = peer.mark(room)
    await peer.send_text(room, command)
    linked = await peer.wait_for(room, notice_from(bot, CORRESPONDENT), since=since, timeout=30)
    say.say("reply", reply=_one_line(linked.body, 400))

    # Room → mail.
    body = say.text.t("mail_message_body", say.lang)
    say.say("mail_send", who=who, text=body)
    since = peer.mark(room)
    event_id = await peer.send_text(room, body)
    message_id = message_id_for(event_id, domain)
    received, out = await _until(lambda: _at_relay(lab, message_id), 30, "the mail at the relay")
    say.say(
        "mail_relay",
        subject=received.peer_cert_subject or "-",
        sender=received.mail_from,
        rcpt=", ".join(received.rcpt_tos),
    )
    for name in SHOWN_HEADERS:
        if out.get(name) is not None:
            say.say("mail_header", name=name, value=str(out[name]))
    plain = out.get_body(("plain",))
    text = plain.get_content() if isinstance(plain, EmailMessage) else ""
    say.say("mail_header", name="text/plain", value=_one_line(str(text)))
    sent = await peer.wait_for(room, notice_from(bot, CORRESPONDENT), since=since, timeout=30)
    say.say("reply", reply=_one_line(sent.body))

    # Mail → room: the correspondent answers in the thread with an IHE XDM package.
    documents = _documents()
    package = build_xdm(
        documents,
        title=say.text.t("mail_xdm_title", say.lang),
        author="Claire Durand",
        when=datetime.now(UTC),
        unique_id=f"2.25.{uuid.uuid4().int}",
    )
    names = ", ".join(
        say.text.t("mail_document", say.lang, name=name, mime=mime, size=len(data))
        for name, mime, data in documents
    )
    say.say("mail_reply", files=names, size=len(package))
    since = peer.mark(room)
    await lab.reply(
        out,
        say.text.t("mail_reply_body", say.lang),
        files=[FileToSend("IHE_XDM.ZIP", "application/zip", package)],
    )
    ghost = f"@{ghost_localpart(bot[1:].split(':', 1)[0], CORRESPONDENT)}:{stack.server_name}"

    def from_ghost(event: Any) -> bool:
        return isinstance(event, RoomMessageText) and event.sender == ghost

    message = await peer.wait_for(room, from_ghost, since=since, timeout=60)
    say.say("mail_inbox")
    say.say("mail_ghost", ghost=ghost, text=_one_line(message.body, 300))
    wire = await client.request("GET", f"/rooms/{room}/event/{message.event_id}")
    say.say("e2ee_wire", type=wire["type"], algorithm=wire["content"].get("algorithm"))
    listing = await peer.wait_for(room, notice_from(ghost, "XDM"), since=since, timeout=30)
    say.say("mail_listing", text=_one_line(listing.body, 400))
    await _files(say, peer, room, ghost, since, {n: d for n, _, d in documents})


async def _files(
    say: Narration, peer: NioPeer, room: str, ghost: str, since: int, sent: dict[str, bytes]
) -> None:
    """Each document of the package arrives as an encrypted file; decrypt and compare."""

    def files() -> list[Any]:
        return [
            e
            for e in peer.events.get(room, [])[since:]
            if isinstance(e, RoomEncryptedFile) and e.sender == ghost
        ]

    await peer.wait_until(lambda: len(files()) >= len(sent), timeout=30)
    for event in files():
        data = await peer.download_decrypted(event)
        if sent.get(event.body) == data:
            same = say.text.t("mail_same", say.lang)
        else:
            same = say.text.t("mail_differs", say.lang)
        say.say("mail_file", name=event.body, mime=event.mimetype, size=len(data), same=same)


def _documents() -> list[tuple[str, str, bytes]]:
    """A CDA-like consultation report and its ECG as a one-page PDF (made-up patient)."""
    cda = """<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <id root="1.2.250.1.999.1" extension="demo-cr-0001"/>
  <code code="11488-4" codeSystem="2.16.840.1.113883.6.1" displayName="Note de consultation"/>
  <title>Compte rendu de consultation de cardiologie</title>
  <effectiveTime value="{when}"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <recordTarget><patientRole><patient><name><family>FICTIF</family><given>Patient</given>
  </name></patient></patientRole></recordTarget>
  <component><structuredBody><component><section>
    <title>Conclusion</title><text>ECG de repos normal. Pas de contre-indication.</text>
  </section></component></structuredBody></component>
</ClinicalDocument>
""".format(when=datetime.now(UTC).strftime("%Y%m%d%H%M%S"))
    return [
        ("CR-consultation-cardio.xml", "text/xml", cda.encode()),
        ("ECG-repos.pdf", "application/pdf", _pdf(["ECG de repos - patient fictif", "Normal."])),
    ]


def _pdf(lines: list[str]) -> bytes:
    """A minimal one-page PDF 1.4 showing ``lines`` (ASCII) in Helvetica."""
    text = " ".join(f"({line}) '" for line in lines).encode("ascii")
    stream = b"BT /F1 14 Tf 72 770 Td 18 TL " + text + b" ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, obj)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)
