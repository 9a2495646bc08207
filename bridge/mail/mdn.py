"""Read receipts (MDN, RFC 8098) as the ANS profiles them for MSSanté.

A receipt is ``multipart/report; report-type=disposition-notification`` with a
human-readable part, the ``message/disposition-notification`` fields and the original
headers. Receipts are sent only when asked for, and never automatically to an address
other than the envelope sender (the ``Return-Path``): that is how receipts get abused.
"""

from __future__ import annotations

import email.policy
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.utils import format_datetime, getaddresses
from typing import Literal

from bridge.mail.policy import (
    header_safe,
    normalize_address,
    normalize_message_id,
    unexpected_headers,
)

__all__ = ["MdnReport", "build_mdn", "normalize_message_id", "parse_mdn", "should_send_mdn"]

_SMTP = email.policy.SMTP
_OUT_HEADERS = frozenset(
    {"from", "to", "subject", "date", "message-id", "in-reply-to", "references", "auto-submitted"}
)
_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:(.*)$")
_NOTIFICATION_TYPES = (
    "message/disposition-notification",
    "message/global-disposition-notification",  # RFC 6533, internationalised agents
)
_DISPOSITION_TYPES = frozenset(
    {"displayed", "processed", "deleted", "dispatched", "denied", "failed"}
)


@dataclass(frozen=True)
class MdnReport:
    """What a received receipt says about one of our messages."""

    original_message_id: str
    disposition: str  # "displayed", "processed", "deleted", ... lowercased
    final_recipient: str | None
    automatic: bool = True  # automatic-action (or unknown) vs manual-action


def _fields(block: str) -> dict[str, str]:
    """Header-style fields (unfolded, names lowercased; first occurrence wins)."""
    fields: dict[str, str] = {}
    name: str | None = None
    for line in block.splitlines():
        if line[:1] in (" ", "\t") and name is not None:
            fields[name] += " " + line.strip()
            continue
        match = _FIELD.match(line)
        if match is None:
            name = None
            continue
        key = match.group(1).lower()
        name = key if key not in fields else None
        if name is not None:
            fields[name] = match.group(2).strip()
    return fields


def _notification_fields(part: Message) -> dict[str, str]:
    """The fields of a message/disposition-notification part, however it was parsed."""
    payload = part.get_payload()
    if isinstance(payload, list):
        fields: dict[str, str] = {}
        for block in payload:
            if isinstance(block, Message):
                for key, value in block.items():
                    fields.setdefault(key.lower(), " ".join(str(value).split()))
        return fields
    raw = part.get_payload(decode=True)
    if isinstance(raw, bytes):
        return _fields(raw.decode("utf-8", "replace"))
    return _fields(payload if isinstance(payload, str) else "")


def _disposition(value: str) -> tuple[str | None, bool]:
    """``automatic-action/MDN-sent-automatically; displayed/error`` -> (displayed, True)."""
    mode, _, rest = value.partition(";")
    kind = re.split(r"[/\s(]", rest.strip().lower(), maxsplit=1)[0] if rest else ""
    if kind not in _DISPOSITION_TYPES:
        return None, True
    return kind, not mode.strip().lower().startswith("manual-action")


def parse_mdn(message: Message) -> MdnReport | None:
    """The receipt in ``message``, or None when it is not a well-formed MDN."""
    try:
        return _parse_mdn(message)
    except (ValueError, TypeError, LookupError, AttributeError, IndexError):
        return None  # the email package trips on some hostile parameters: not a receipt


def _parse_mdn(message: Message) -> MdnReport | None:
    if message.get_content_type() != "multipart/report":
        return None
    report_type = message.get_param("report-type")
    if not isinstance(report_type, str) or report_type.strip().lower() != (
        "disposition-notification"
    ):
        return None
    parts = message.get_payload()
    if not isinstance(parts, list):
        return None
    for part in parts:
        if not isinstance(part, Message):
            continue
        if part.get_content_type() not in _NOTIFICATION_TYPES:
            continue
        fields = _notification_fields(part)
        original = normalize_message_id(fields.get("original-message-id"))
        if original is None:  # some agents omit it: the report still answers In-Reply-To
            original = normalize_message_id(str(message.get("in-reply-to", "")))
        kind, automatic = _disposition(fields.get("disposition", ""))
        if original is None or kind is None:
            return None
        recipient = fields.get("final-recipient", "")
        address = recipient.partition(";")[2].strip() if ";" in recipient else recipient
        return MdnReport(
            original_message_id=original,
            disposition=kind,
            final_recipient=normalize_address(address.strip("<> ")) if address else None,
            automatic=automatic,
        )
    return None


def _single_address(value: str | None) -> str | None:
    if not value or any(c in value for c in "\r\n\x00"):
        return None
    pairs = [addr for _, addr in getaddresses([value]) if addr]
    if len(pairs) != 1:
        return None
    return normalize_address(pairs[0])


def should_send_mdn(headers: Mapping[str, str]) -> str | None:
    """Where to send an automatic receipt, or None when none must be sent.

    Requires ``Disposition-Notification-To`` with one address, equal (case-insensitively)
    to the ``Return-Path``; a missing Return-Path counts as different (RFC 8098 2.1).
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    target = _single_address(lowered.get("disposition-notification-to"))
    return_path = _single_address(lowered.get("return-path"))
    if target is None or return_path is None:
        return None
    return target if target.lower() == return_path.lower() else None


def _ascii_address(address: str, role: str) -> str:
    normal = normalize_address(address)
    if normal is None:
        raise ValueError(f"invalid_address:{role}")
    return normal


def build_mdn(
    *,
    original_message_id: str,
    original_subject: str,
    original_headers: str,
    recipient: str,
    from_addr: str,
    to_addr: str,
    message_id: str,
    date: datetime,
    disposition: Literal["displayed", "processed"],
    manual: bool,
    original_recipient: str | None = None,
    explanation: str | None = None,
    subject_prefix: str = "MDN",
    reporting_ua: str = "SanteGuard",
) -> bytes:
    """A receipt for ``original_message_id``, as CRLF bytes ready for SMTP.

    ``explanation`` is the human-readable first part (the caller renders it from its text
    catalog); without it the part only names the disposition, as RFC 8098 allows.
    """
    original = normalize_message_id(original_message_id)
    own_id = normalize_message_id(message_id)
    if original is None or own_id is None:
        raise ValueError("invalid_message_id")
    final = _ascii_address(recipient, "recipient")
    when = date if date.tzinfo is not None else date.replace(tzinfo=UTC)
    mode = (
        "manual-action/MDN-sent-manually" if manual else "automatic-action/MDN-sent-automatically"
    )
    ua = "".join(c for c in header_safe(reporting_ua, 80) if c.isascii()) or "SanteGuard"
    lines = [f"Reporting-UA: {ua}"]
    if original_recipient is not None:
        lines.append(f"Original-Recipient: rfc822;{_ascii_address(original_recipient, 'orig')}")
    lines += [
        f"Final-Recipient: rfc822;{final}",
        f"Original-Message-ID: {original}",
        f"Disposition: {mode}; {disposition}",
    ]
    msg = EmailMessage(policy=_SMTP)
    msg["From"] = Address(addr_spec=_ascii_address(from_addr, "from"))
    msg["To"] = Address(addr_spec=_ascii_address(to_addr, "to"))
    msg["Subject"] = header_safe(f"{subject_prefix}: {original_subject}", 250)
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = own_id
    msg["In-Reply-To"] = original
    msg["References"] = original
    if not manual:
        msg["Auto-Submitted"] = "auto-replied"
    msg["MIME-Version"] = "1.0"

    human = EmailMessage(policy=_SMTP)
    human.set_content(explanation or f"{original}: {disposition}\n", cte="quoted-printable")
    notification = EmailMessage(policy=_SMTP)
    notification["Content-Type"] = "message/disposition-notification"
    notification["Content-Transfer-Encoding"] = "7bit"
    notification.set_payload("".join(line + "\r\n" for line in lines))
    headers = EmailMessage(policy=_SMTP)
    headers.set_content(
        original_headers.replace("\x00", ""), subtype="rfc822-headers", cte="quoted-printable"
    )
    for part in (human, headers):
        del part["MIME-Version"]
    boundary = "=_sgmdn_" + hashlib.sha256(own_id.encode()).hexdigest()[:24]
    msg["Content-Type"] = "multipart/report"
    msg.set_param("report-type", "disposition-notification")
    msg.set_payload([human, notification, headers])
    msg.set_boundary(boundary)
    raw = msg.as_bytes(policy=_SMTP)
    if unexpected_headers(raw, _OUT_HEADERS):
        raise ValueError("header_injection")
    return raw
