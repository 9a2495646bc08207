"""A local MSSanté-like mail service for tests, the demo and the benchmarks.

- a PKI generated now (CA standing in for IGC-Santé, server and client certificates);
- an SMTP relay (aiosmtpd) demanding STARTTLS and a client certificate: mail to the
  network's application mailbox (any ``+tag``) is delivered into Dovecot, mail to
  anyone else is kept in ``relay.messages`` (the outside world);
- Dovecot holding the application mailbox, IMAP over TLS with client certificates;
- ``reply``: a correspondent answering a mail, through the same relay, as a hospital's
  mail system would (threading headers, optional attachments and read-receipt request).
"""

from __future__ import annotations

import email
import email.policy
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib

from bridge.devtools import secretlog
from bridge.devtools.dovecot import Dovecot
from bridge.devtools.mailcerts import Pki, make_pki
from bridge.devtools.mailserver import RelayServer
from bridge.mail.tls import TlsFiles, client_context

MAILBOX = "cpts@cpts.mssante.test"
CORRESPONDENT = "dr.durand@chu-exemple.mssante.test"
ALLOWED = ("*.mssante.test",)


@dataclass(frozen=True)
class FileToSend:
    filename: str
    content_type: str
    data: bytes


class MailLab:
    def __init__(self, workdir: Path, *, mailbox: str = MAILBOX) -> None:
        self.workdir = workdir.resolve()  # paths go into Dovecot's and SantéGuard's configs
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.mailbox = mailbox
        self.pki: Pki | None = None
        self.relay: RelayServer | None = None
        self.dovecot: Dovecot | None = None
        self.password = secrets.token_urlsafe(18)
        secretlog.register("mail lab IMAP password", self.password)  # tests/secretscan.py
        self.delivered: list[bytes] = []  # into the application mailbox

    async def start(self) -> None:
        self.pki = make_pki(self.workdir / "pki")
        self.dovecot = Dovecot(
            self.workdir / "dovecot", self.pki, user="santeguard", password=self.password
        )
        await self.dovecot.start()
        self.relay = RelayServer(self.pki, deliver=self._route)
        await self.relay.start()

    async def stop(self) -> None:
        if self.relay is not None:
            await self.relay.stop()
        if self.dovecot is not None:
            await self.dovecot.stop()

    def is_mailbox(self, rcpt: str) -> bool:
        """``rcpt`` is the application mailbox, with or without a ``+tag``."""
        local, _, domain = self.mailbox.partition("@")
        r_local, _, r_domain = rcpt.lower().partition("@")
        return r_domain == domain and r_local.split("+", 1)[0] == local

    async def _route(self, data: bytes, mail_from: str, rcpts: list[str]) -> None:
        for rcpt in rcpts:
            if self.is_mailbox(rcpt):
                assert self.dovecot is not None
                await self.dovecot.deliver(data, sender=mail_from)
                self.delivered.append(data)
                return

    def mail_config(self, **extra: Any) -> dict[str, Any]:
        """The ``mail:`` config section pointing at this lab."""
        assert self.pki is not None and self.relay is not None and self.dovecot is not None
        return {
            "enabled": True,
            "address": self.mailbox,
            "smtp_host": "localhost",
            "smtp_port": self.relay.port,
            "smtp_tls": "starttls",
            "imap_host": "localhost",
            "imap_port": self.dovecot.imap_port,
            "imap_username": self.dovecot.user,
            "imap_password": self.password,
            "ca_file": str(self.pki.ca_cert),
            "client_cert": str(self.pki.client_cert),
            "client_key": str(self.pki.client_key),
            "allowlist_patterns": list(ALLOWED),
            "retry_base_seconds": 1,
            "retry_max_seconds": 5,
            "idle_seconds": 30,
            "poll_seconds": 1,
            **extra,
        }

    def outside(self) -> list[EmailMessage]:
        """Mail the relay accepted for the outside world, parsed."""
        assert self.relay is not None
        out = []
        for received in self.relay.messages:
            if not any(self.is_mailbox(r) for r in received.rcpt_tos):
                msg = email.message_from_bytes(received.data, policy=email.policy.default)
                assert isinstance(msg, EmailMessage)
                out.append(msg)
        return out

    async def reply(
        self,
        original: EmailMessage,
        text: str,
        *,
        sender: str = CORRESPONDENT,
        name: str = "Dr Claire Durand",
        files: Sequence[FileToSend] = (),
        ask_receipt: bool = False,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Answer ``original`` as its recipient would: to its Reply-To, in its thread."""
        reply_to = str(original.get("Reply-To") or original.get("From"))
        msg = EmailMessage()
        msg["From"] = f"{name} <{sender}>"
        msg["To"] = reply_to
        msg["Subject"] = "Re: " + str(original.get("Subject", "")).removeprefix("Re: ")
        msg["Date"] = format_datetime(datetime.now(UTC))
        message_id = make_msgid(domain=sender.split("@")[1])
        msg["Message-ID"] = message_id
        parent = str(original["Message-ID"])
        msg["In-Reply-To"] = parent
        msg["References"] = (str(original.get("References", "")) + " " + parent).strip()
        if ask_receipt:
            msg["Disposition-Notification-To"] = sender
            msg["Return-Path"] = f"<{sender}>"
        for key, value in (headers or {}).items():
            msg[key] = value
        msg.set_content(text)
        for f in files:
            maintype, _, subtype = f.content_type.partition("/")
            msg.add_attachment(f.data, maintype=maintype, subtype=subtype, filename=f.filename)
        await self.send_raw(msg.as_bytes(policy=email.policy.SMTP), sender, [reply_to])
        return message_id

    async def send_raw(self, raw: bytes, sender: str, recipients: Sequence[str]) -> None:
        """Submit any bytes through the relay with a valid client certificate."""
        assert self.pki is not None and self.relay is not None
        context = client_context(
            TlsFiles(self.pki.ca_cert, self.pki.client_cert, self.pki.client_key)
        )
        await aiosmtplib.send(
            raw,
            sender=sender,
            recipients=list(recipients),
            hostname="localhost",
            port=self.relay.port,
            start_tls=True,
            tls_context=context,
        )
