"""Mail → room: one fetched mail is checked, routed to its room and posted by its sender's ghost.

Outcomes, each recorded with the mail's Message-ID (so it is never handled twice) and
audited: ``posted``; ``receipt`` (an MDN marking a sent message read); ``refused`` (an
auto-reply loop or our own mail coming back); ``quarantined`` (hostile, from outside the
allow-list, or for no known room: kept for the admins). A Matrix failure that may heal
raises TransientError and nothing is recorded: the mail is fetched and tried again, and
the posts it already made come back with the same event IDs (fixed transaction IDs).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.core.errors import TransientError
from bridge.core.ports import AlertPort, AuditPort, RoomLanguagePort, TextPort
from bridge.db.txn import write_transaction
from bridge.mail import policy
from bridge.mail.ghosts import Ghosts, txn_id
from bridge.mail.mdn import should_send_mdn
from bridge.mail.mime import Attachment, HostileMail, InboundMail, MimeLimits, parse_inbound
from bridge.mail.sanitize import html_to_text, matrix_html
from bridge.mail.store import MailStore, ReceiptRequest, now_ms
from bridge.mail.xdm import XdmError, XdmPackage, unpack_xdm

log = logging.getLogger("santeguard.mail.inbound")

FileEncryptor = Callable[[bytes], tuple[bytes, dict[str, Any]]]
_QUARANTINE_KEEP = 1024 * 1024  # bytes of a quarantined mail kept for the admins


class UploadPort(Protocol):
    async def upload(
        self, data: bytes, content_type: str, filename: str, *, user_id: str | None = None
    ) -> str: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # posted | receipt | refused | quarantined | duplicate
    reason: str | None = None
    room_id: str | None = None
    event_id: str | None = None


def _is_xdm(att: Attachment) -> bool:
    name = att.filename.upper()
    return name.endswith("IHE_XDM.ZIP") or (
        att.content_type == "application/zip" and b"IHE_XDM/" in att.data[:65536]
    )


class MailToRoom:
    def __init__(
        self,
        store: MailStore,
        ghosts: Ghosts,
        media: UploadPort,
        encrypt_file: FileEncryptor,
        audit: AuditPort,
        alerts: AlertPort,
        *,
        own_domain: str,
        own_address: str,
        actor: str,
        text: TextPort,
        rooms: RoomLanguagePort,
        language: str,
        limits: MimeLimits = MimeLimits(),
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        self._text = text
        self._rooms = rooms
        self._lang = language
        self._store = store
        self._ghosts = ghosts
        self._media = media
        self._encrypt = encrypt_file
        self._audit = audit
        self._alerts = alerts
        self._domain = own_domain
        self._address = own_address.lower()
        self._actor = actor
        self._limits = limits
        self._on_outcome = on_outcome

    async def handle(self, raw: bytes, uidvalidity: int, uid: int) -> Outcome:
        outcome = await self._handle(raw, uidvalidity, uid)
        if self._on_outcome is not None:
            self._on_outcome(outcome.status)
        return outcome

    async def _handle(self, raw: bytes, uidvalidity: int, uid: int) -> Outcome:
        try:
            mail = parse_inbound(raw, self._limits)
        except HostileMail as e:
            mid = f"<raw.{hashlib.sha256(raw).hexdigest()[:32]}@{self._domain}>"
            if await self._seen(mid):
                return Outcome("duplicate")
            return await self._quarantine(raw, uidvalidity, uid, mid, "?", e.reason)
        if await self._seen(mail.message_id):
            return Outcome("duplicate")
        if mail.mdn is not None:
            return await self._receipt(mail, uidvalidity, uid)
        loop = policy.loop_reason(mail.headers, self._domain)
        if loop is None and policy.is_own_message_id(mail.message_id, self._domain):
            loop = "own_message"
        if loop is not None:
            return await self._record(
                mail.message_id, uidvalidity, uid, Outcome("refused", loop), sender=mail.from_addr
            )
        if not self._store.allowlist.allows(mail.from_addr):
            return await self._quarantine(
                raw, uidvalidity, uid, mail.message_id, mail.from_addr, "sender_not_allowed"
            )
        room_id = await self._route(mail)
        if room_id is None:
            return await self._quarantine(
                raw, uidvalidity, uid, mail.message_id, mail.from_addr, "unknown_room"
            )
        try:
            event_id = await self._post(mail, room_id)
        except TransientError:
            raise
        except Exception as e:
            log.warning(
                "Mail %s could not be posted to %s: %s", mail.message_id, room_id, type(e).__name__
            )
            return await self._quarantine(
                raw, uidvalidity, uid, mail.message_id, mail.from_addr, "room_refused"
            )
        receipt_to = should_send_mdn(mail.headers)
        request = None
        if receipt_to is not None:
            headers = json.dumps({k: v for k, v in mail.headers.items()})
            request = ReceiptRequest(
                event_id, room_id, mail.message_id, receipt_to, mail.subject[:200], headers
            )
        return await self._record(
            mail.message_id,
            uidvalidity,
            uid,
            Outcome("posted", None, room_id, event_id),
            sender=mail.from_addr,
            receipt=request,
        )

    async def _seen(self, message_id: str) -> bool:
        return bool(
            await self._store.db.fetchval(
                "SELECT 1 FROM mail_inbound WHERE message_id = $1", message_id
            )
        )

    async def _route(self, mail: InboundMail) -> str | None:
        """Plus-address tag first; then the thread (a reply to a mail the room sent)."""
        for address in mail.to_addrs:
            tag = policy.tag_of(address)
            if tag is not None and (room := self._store.room_for_tag(tag)) is not None:
                return room
        for ref in (mail.in_reply_to, *reversed(mail.references)):
            if not ref:
                continue
            found = await self._store.event_for_message(ref)
            if found is not None and self._store.link_of(found[0]) is not None:
                return found[0]
        return None

    async def _post(self, mail: InboundMail, room_id: str) -> str:
        ghost = await self._ghosts.ghost(mail.from_addr, mail.from_name or None, room_id)
        text = mail.text or (html_to_text(mail.html) if mail.html else "")
        body = f"{mail.subject}\n\n{text}".strip() if mail.subject else text
        content: dict[str, Any] = {"msgtype": "m.text", "body": body or "(vide)"}
        if mail.html:
            subject = _escape(mail.subject)
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = (
                f"<p><strong>{subject}</strong></p>" if subject else ""
            ) + matrix_html(mail.html)
        first = await self._ghosts.send(ghost, room_id, content, txn_id(mail.message_id, 0))
        part = 1
        for att in mail.attachments:
            files: list[Attachment] = [att]
            if _is_xdm(att):
                files = await self._xdm(ghost, room_id, mail, att, part)
                part += 1
            for f in files:
                await self._send_file(ghost, room_id, f, txn_id(mail.message_id, part))
                part += 1
        return first

    async def _xdm(
        self, ghost: Any, room_id: str, mail: InboundMail, att: Attachment, part: int
    ) -> list[Attachment]:
        """An XDM package: a checked document list, then each document as a file."""
        try:
            package = unpack_xdm(att.data)
        except XdmError as e:
            await self._audit.record(
                self._actor,
                "mail.xdm_refused",
                room_id=room_id,
                details={"message_id": mail.message_id, "reason": e.reason},
            )
            lang = await self._rooms.language(room_id) or self._lang
            listing = self._text.t("mail.xdm_refused", lang, reason=e.reason)
            await self._ghosts.send(
                ghost,
                room_id,
                {"msgtype": "m.notice", "body": listing},
                txn_id(mail.message_id, part),
            )
            return []
        lang = await self._rooms.language(room_id) or self._lang
        header = self._text.t("mail.xdm_listing", lang, count=len(package.documents))
        await self._ghosts.send(
            ghost,
            room_id,
            _xdm_listing(header, package, self._text.t("mail.bytes_unit", lang)),
            txn_id(mail.message_id, part),
        )
        await self._audit.record(
            self._actor,
            "mail.xdm_received",
            room_id=room_id,
            details={"message_id": mail.message_id, "documents": len(package.documents)},
        )
        return [
            Attachment(filename=d.path.rsplit("/", 1)[-1], content_type=d.mime_type, data=d.data)
            for d in package.documents
        ]

    async def _send_file(self, ghost: Any, room_id: str, f: Attachment, txn: str) -> None:
        msgtype = "m.image" if f.content_type.startswith("image/") else "m.file"
        info = {"mimetype": f.content_type, "size": len(f.data)}
        content: dict[str, Any] = {
            "msgtype": msgtype,
            "body": f.filename,
            "filename": f.filename,
            "info": info,
        }
        user = getattr(ghost, "bot_mxid", None)
        if await self._ghosts.encrypted(room_id):
            cipher, file_info = self._encrypt(f.data)
            url = await self._media.upload(cipher, "application/octet-stream", "", user_id=user)
            content["file"] = {**file_info, "url": url}
        else:
            # No name in the upload: the query string is in the homeserver's access log.
            content["url"] = await self._media.upload(f.data, f.content_type, "", user_id=user)
        await self._ghosts.send(ghost, room_id, content, txn)

    async def _receipt(self, mail: InboundMail, uidvalidity: int, uid: int) -> Outcome:
        assert mail.mdn is not None
        found = await self._store.event_for_message(mail.mdn.original_message_id)
        if found is None:
            return await self._record(
                mail.message_id,
                uidvalidity,
                uid,
                Outcome("refused", "receipt_unknown"),
                sender=mail.from_addr,
            )
        room_id, event_id = found
        if mail.mdn.disposition.endswith("displayed") and self._store.link_of(room_id):
            ghost = await self._ghosts.ghost(mail.from_addr, mail.from_name or None, room_id)
            await ghost.send_receipt(room_id, event_id)
        return await self._record(
            mail.message_id,
            uidvalidity,
            uid,
            Outcome("receipt", mail.mdn.disposition, room_id, event_id),
            sender=mail.from_addr,
        )

    async def _quarantine(
        self, raw: bytes, uidvalidity: int, uid: int, message_id: str, sender: str, reason: str
    ) -> Outcome:
        outcome = Outcome("quarantined", reason)
        async with write_transaction(self._store.db) as conn:
            await conn.execute(
                "INSERT INTO mail_quarantine (message_id, from_addr, reason, raw, received_at) "
                "VALUES ($1, $2, $3, $4, $5)",
                message_id,
                sender[:254],
                reason,
                raw[:_QUARANTINE_KEEP],
                now_ms(),
            )
            await self._insert(conn, message_id, uidvalidity, uid, outcome)
        await self._audit.record(
            self._actor,
            "mail.quarantined",
            subject=sender[:254],
            details={"message_id": message_id, "reason": reason},
        )
        await self._alerts.alert("alert.mail_quarantined", sender=sender[:254], reason=f"{reason}")
        return outcome

    async def _record(
        self,
        message_id: str,
        uidvalidity: int,
        uid: int,
        outcome: Outcome,
        *,
        sender: str,
        receipt: ReceiptRequest | None = None,
    ) -> Outcome:
        async with write_transaction(self._store.db) as conn:
            await self._insert(conn, message_id, uidvalidity, uid, outcome)
            if outcome.status == "posted" and outcome.room_id and outcome.event_id:
                await MailStore.remember(
                    conn, message_id, outcome.room_id, outcome.event_id, "in", sender
                )
            if receipt is not None:
                await MailStore.want_receipt(conn, receipt)
        await self._audit.record(
            self._actor,
            f"mail.{outcome.status}",
            room_id=outcome.room_id,
            subject=sender[:254],
            details={
                "message_id": message_id,
                "reason": outcome.reason,
                "event_id": outcome.event_id,
            },
        )
        return outcome

    @staticmethod
    async def _insert(conn: Any, message_id: str, uidvalidity: int, uid: int, o: Outcome) -> None:
        await conn.execute(
            "INSERT INTO mail_inbound (message_id, uidvalidity, uid, status, room_id, event_id, "
            "reason, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "ON CONFLICT (message_id) DO NOTHING",
            message_id,
            uidvalidity,
            uid,
            o.status,
            o.room_id,
            o.event_id,
            o.reason,
            now_ms(),
        )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _xdm_listing(header: str, package: XdmPackage, unit: str) -> dict[str, Any]:
    lines = [header]
    items = []
    for d in package.documents:
        title = d.title or d.path.rsplit("/", 1)[-1]
        lines.append(f"• {title} — {d.mime_type}, {d.size} {unit}, SHA-1 {d.sha1[:12]}…")
        items.append(f"<li>{_escape(title)} — {_escape(d.mime_type)}, {d.size} {unit}</li>")
    html = f"<p>{_escape(lines[0])}</p><ul>{''.join(items)}</ul>"
    return {
        "msgtype": "m.notice",
        "body": "\n".join(lines),
        "format": "org.matrix.custom.html",
        "formatted_body": html,
    }


def headers_of(value: str) -> Mapping[str, str]:
    data = json.loads(value)
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
