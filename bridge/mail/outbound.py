"""Room → mail: each practitioner's message in a linked room becomes one queued MIME mail.

The bot reads a room only where it was invited, so only those rooms can be linked; in an
encrypted room it sees the message once its device decrypted it (``on_decrypted``).
The mail is built here, completely (files downloaded and decrypted), and queued in one
database transaction with the Message-ID ↔ event mapping; the dispatcher marks the event
handled only after that commit, and a replay finds the row and queues nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.commands import CommandError
from bridge.core.errors import TransientError
from bridge.core.ports import AuditPort, RoutesPort
from bridge.db.txn import write_transaction
from bridge.mail import policy
from bridge.mail.mime import Attachment, OutboundMail, build_outbound
from bridge.mail.outbox import OutboxStore, QueuedMail
from bridge.mail.sanitize import matrix_html
from bridge.mail.store import Link, MailStore, RoomFile
from bridge.mail.xdm_build import build_xdm

_MAX_TS_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z in milliseconds
log = logging.getLogger("santeguard.mail.outbound")

FILE_TYPES = frozenset({"m.file", "m.image", "m.audio", "m.video"})
TEXT_TYPES = frozenset({"m.text", "m.emote"})


class PractitionerRecord(Protocol):
    """What the mail needs of a verification: the name and the identifier it shows."""

    @property
    def first_name(self) -> str: ...
    @property
    def last_name(self) -> str: ...
    @property
    def idnps(self) -> str: ...
    def is_valid_at(self, when: datetime) -> bool: ...


class Practitioners(Protocol):
    def verification(self, user_id: str) -> PractitionerRecord | None: ...


class MediaPort(Protocol):
    async def download(self, mxc: str, *, max_bytes: int) -> bytes: ...


FileDecryptor = Callable[[bytes, Mapping[str, Any]], bytes]


class RoomNotices(Protocol):
    async def notify(
        self, room_id: str, key: str, /, *, reply_to: str | None = None, **params: object
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Mailbox:
    """The network's application mailbox, as outbound mail needs it."""

    address: str
    request_mdn: bool
    max_bytes: int

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1].lower()


def rpps_of(idnps: str) -> str | None:
    """The RPPS number of an IDNPS (``8`` + 11 digits); None for ADELI identities."""
    return idnps[1:] if idnps.startswith("8") and len(idnps) == 12 else None


class RoomToMail:
    def __init__(
        self,
        store: MailStore,
        outbox: OutboxStore,
        mailbox: Mailbox,
        practitioners: Practitioners,
        media: MediaPort,
        decrypt_file: FileDecryptor,
        notices: RoomNotices,
        audit: AuditPort,
        *,
        joined: Callable[[str], bool],
        is_own_user: Callable[[str], bool],
        command_prefix: str,
        wake: Callable[[], None],
    ) -> None:
        self._store = store
        self._outbox = outbox
        self._mailbox = mailbox
        self._people = practitioners
        self._media = media
        self._decrypt = decrypt_file
        self._notices = notices
        self._audit = audit
        self._joined = joined
        self._own = is_own_user
        self._prefix = command_prefix
        self._wake = wake

    def subscribe(self, routes: RoutesPort) -> None:
        routes.on("m.room.message", self.on_message, ignore_own=True)
        routes.on_decrypted("m.room.message", self.on_message)

    async def on_message(self, event: dict[str, Any]) -> bool:
        room_id = str(event.get("room_id", ""))
        link = self._store.link_of(room_id)
        if link is None or not self._joined(room_id):
            return False
        sender = str(event.get("sender", ""))
        content = event.get("content")
        if self._own(sender) or not isinstance(content, dict):
            return False
        relates = content.get("m.relates_to")
        if isinstance(relates, dict) and relates.get("rel_type") == "m.replace":
            new = content.get("m.new_content")
            if not isinstance(new, dict):
                return False
            content = new
        msgtype = content.get("msgtype")
        body = content.get("body")
        if msgtype not in TEXT_TYPES | FILE_TYPES or not isinstance(body, str):
            return False
        if msgtype in TEXT_TYPES and body.lstrip().startswith(self._prefix):
            return False  # a command to the bot, not a message for the correspondent
        event_id = str(event.get("event_id", ""))
        who = self._people.verification(sender)
        if who is None or not who.is_valid_at(datetime.now(UTC)):
            await self._audit.record(
                sender,
                "mail.not_sent",
                room_id=room_id,
                details={"reason": "not_verified", "event_id": event_id},
            )
            await self._notices.notify(room_id, "mail.not_verified", reply_to=event_id, user=sender)
            return True
        attachments, skipped = await self._attachments(room_id, event_id, msgtype, content)
        text, html = _text_of(msgtype, content, who)
        for name, reason in skipped:
            text += f"\n\n[{name}: {reason}]"
        try:
            raw, message_id = await self._build(event, link, who, text, html, attachments)
        except ValueError as e:  # the MIME writer refused its own output (e.g. injection)
            await self._audit.record(
                sender,
                "mail.not_sent",
                room_id=room_id,
                details={"reason": str(e)[:60], "event_id": event_id},
            )
            await self._notices.notify(room_id, "mail.build_refused", reply_to=event_id)
            return True
        if len(raw) > self._mailbox.max_bytes:
            await self._notices.notify(room_id, "mail.too_large", reply_to=event_id)
            await self._audit.record(
                sender,
                "mail.not_sent",
                room_id=room_id,
                details={"reason": "too_large", "event_id": event_id, "bytes": len(raw)},
            )
            return True
        mail = QueuedMail(event_id, room_id, message_id, sender, link.address, raw)
        if await self._queue(mail):
            await self._audit.record(
                sender,
                "mail.queued",
                room_id=room_id,
                subject=link.address,
                details={
                    "event_id": event_id,
                    "message_id": message_id,
                    "attachments": len(attachments),
                },
            )
            self._wake()
        for name, reason in skipped:
            await self._notices.notify(
                room_id, "mail.file_skipped", reply_to=event_id, name=name, reason=reason
            )
        return True

    async def _build(
        self,
        event: dict[str, Any],
        link: Link,
        who: PractitionerRecord,
        text: str,
        html: str | None,
        attachments: list[Attachment],
    ) -> tuple[bytes, str]:
        room_id, event_id = str(event["room_id"]), str(event["event_id"])
        domain = self._mailbox.domain
        message_id = policy.message_id_for(event_id, domain)
        root = f"<sg.room.{link.tag}@{domain}>"
        recent = [m for m in await self._store.recent_messages(room_id) if m != message_id]
        ts = event.get("origin_server_ts")
        # A timestamp past year 9999 (or negative) would raise in fromtimestamp: now, then.
        when = datetime.now(UTC)
        if isinstance(ts, int) and 0 <= ts < _MAX_TS_MS:
            when = datetime.fromtimestamp(ts / 1000, UTC)
        mail = OutboundMail(
            from_addr=self._mailbox.address,
            from_name=policy.header_safe(f"{who.first_name} {who.last_name}".strip()),
            rpps=rpps_of(who.idnps),
            to_addr=link.address,
            reply_to=policy.tagged_address(self._mailbox.address, link.tag),
            subject=("Re: " if recent else "") + link.subject,
            text=text,
            html=html,
            attachments=tuple(attachments),
            message_id=message_id,
            in_reply_to=recent[-1] if recent else root,
            references=(root, *recent),
            date=when,
            request_mdn=self._mailbox.request_mdn,
        )
        return build_outbound(mail), message_id

    async def _attachments(
        self, room_id: str, event_id: str, msgtype: str, content: dict[str, Any]
    ) -> tuple[list[Attachment], list[tuple[str, str]]]:
        if msgtype not in FILE_TYPES:
            return [], []
        info = content.get("info") if isinstance(content.get("info"), dict) else {}
        assert isinstance(info, dict)
        name = policy.header_safe(str(content.get("filename") or content.get("body") or "file"))
        mimetype = str(info.get("mimetype") or "application/octet-stream")
        file_info = content.get("file") if isinstance(content.get("file"), dict) else None
        url = file_info.get("url") if file_info else content.get("url")
        if not isinstance(url, str):
            return [], [(name, "no_url")]
        try:
            data = await self._file(url, file_info)
        except TransientError:
            raise
        except Exception as e:
            log.warning("File of %s not attached: %s", event_id, type(e).__name__)
            return [], [(name, getattr(e, "reason", type(e).__name__))]
        await self._store.remember_file(
            room_id, event_id, RoomFile(event_id, name, mimetype, len(data), url, file_info)
        )
        return [Attachment(filename=name, content_type=mimetype, data=data)], []

    async def _file(self, url: str, file_info: Mapping[str, Any] | None) -> bytes:
        """A room file's clear bytes (encrypted media decrypted)."""
        data = await self._media.download(url, max_bytes=self._mailbox.max_bytes)
        return data if file_info is None else self._decrypt(data, file_info)

    async def _queue(self, mail: QueuedMail) -> bool:
        """Queue ``mail`` with its Message-ID ↔ event mapping, in one transaction; False if
        this event's mail was queued already (a replayed event)."""
        async with write_transaction(self._outbox.db) as conn:
            fresh = await OutboxStore.enqueue(conn, mail)
            if fresh:
                await MailStore.remember(
                    conn, mail.message_id, mail.room_id, mail.event_id, "out", mail.recipient
                )
        return fresh

    async def send_xdm(
        self, room_id: str, event_id: str, sender: str, link: Link, files: list[RoomFile]
    ) -> str:
        """`!sg mail xdm`: the room's chosen files as one IHE XDM package, mailed to the link."""
        who = self._people.verification(sender)
        if who is None or not who.is_valid_at(datetime.now(UTC)):
            raise CommandError("mail.xdm_not_verified")
        contents = [(f.name, f.mimetype, await self._file(f.url, f.file_info)) for f in files]
        key = f"xdm:{event_id}"
        package = build_xdm(
            contents,
            title=link.subject,
            author=f"{who.first_name} {who.last_name}".strip(),
            when=datetime.now(UTC),
            unique_id=policy.message_id_for(key, self._mailbox.domain).strip("<>"),
        )
        text = "\n".join(f"- {n} ({m})" for n, m, _ in contents)
        event = {"room_id": room_id, "event_id": key, "sender": sender}
        attachment = Attachment(
            filename="IHE_XDM.ZIP", content_type="application/zip", data=package
        )
        raw, message_id = await self._build(event, link, who, text, None, [attachment])
        await self._queue(
            QueuedMail(key, room_id, message_id, sender, link.address, raw, kind="xdm")
        )
        await self._audit.record(
            sender,
            "mail.xdm_queued",
            room_id=room_id,
            subject=link.address,
            details={"message_id": message_id, "files": len(contents)},
        )
        self._wake()
        return message_id


def _text_of(
    msgtype: str, content: dict[str, Any], who: PractitionerRecord
) -> tuple[str, str | None]:
    body = str(content.get("body", ""))
    if msgtype in FILE_TYPES:
        return body, None
    html: str | None = None
    if content.get("format") == "org.matrix.custom.html" and isinstance(
        content.get("formatted_body"), str
    ):
        html = matrix_html(str(content["formatted_body"]))
    if msgtype == "m.emote":
        name = f"{who.first_name} {who.last_name}".strip()
        body = f"* {name} {body}"
        html = None
    return body, html
