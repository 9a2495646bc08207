"""Mail bytes to and from dataclasses: the outbound builder and the hostile-input parser.

Inbound mail is untrusted input of up to tens of megabytes: limits are enforced before the
costly steps (size, then header block, then the part tree while it is being parsed, then
each decoded part), and every failure surfaces as ``HostileMail(reason)`` with a code,
never another exception, so one bad mail cannot stop the poller.
"""

from __future__ import annotations

import email.policy
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesFeedParser
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from bridge.mail.mdn import MdnReport, parse_mdn
from bridge.mail.policy import (
    encoded_control,
    header_safe,
    normalize_address,
    normalize_message_id,
    safe_filename,
    thread_ids,
    unexpected_headers,
    unfold_header,
)
from bridge.mail.sanitize import html_to_text

__all__ = ["Attachment", "HostileMail", "InboundMail", "MimeLimits", "OutboundMail",
           "build_outbound", "parse_inbound"]  # fmt: skip

MAX_REFERENCES = 20  # outbound: the thread root plus the most recent ancestors
MAX_INBOUND_REFERENCES = 100
KEPT_HEADERS = (
    "auto-submitted", "precedence", "x-autoreply", "x-autorespond", "x-autoreply-from",
    "x-mail-autoreply", "disposition-notification-to", "return-path", "content-type",
    "message-id", "list-id", "sender",
)  # fmt: skip
_OUT_HEADERS = frozenset(
    {"from", "to", "reply-to", "subject", "date", "message-id", "in-reply-to", "references",
     "disposition-notification-to"}
)  # fmt: skip
_SEND = email.policy.SMTP
_READ = email.policy.default  # header decoding only, one header at a time
# The tree is parsed with compat32: it keeps raw strings and never runs the header
# registry on Content-* (whose parser raises IndexError/AttributeError on some input).
_TREE = email.policy.compat32
_DUMP = email.policy.compat32.clone(linesep="\r\n")
_MIME_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
_MSGIDS = re.compile(r"<[^<>\s]+>")
_EW_GAP = re.compile(r"(?<=\?=)[ \t]+(?==\?)")
_NAME_PREFIXES = ("x-mss-",)
_PART_HEADERS = ("content-id", "content-description")


@dataclass(frozen=True)
class Attachment:
    """A file carried by a mail; ``headers`` keeps MSSanté ``X-MSS-*`` fields and the like."""

    filename: str
    content_type: str
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboundMail:
    """Everything a mail sent for a Matrix message says; ``build_outbound`` makes the bytes."""

    from_addr: str
    from_name: str
    rpps: str | None
    to_addr: str
    reply_to: str | None
    subject: str
    text: str
    html: str | None
    attachments: tuple[Attachment, ...]
    message_id: str
    in_reply_to: str | None
    references: tuple[str, ...]
    date: datetime
    request_mdn: bool


@dataclass(frozen=True)
class MimeLimits:
    """Bounds on inbound mail. Depth counts from 0 (the message itself)."""

    max_bytes: int = 25 * 2**20
    max_depth: int = 10
    max_parts: int = 100
    max_decoded_bytes: int = 50 * 2**20
    max_header_bytes: int = 64 * 1024


class HostileMail(Exception):
    """A mail refused before bridging: ``reason`` is a code, ``detail`` holds no content."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class InboundMail:
    """A received mail reduced to what the bridge uses. ``to_addrs`` holds To then Cc."""

    message_id: str
    in_reply_to: str | None
    references: tuple[str, ...]
    from_addr: str
    from_name: str
    to_addrs: tuple[str, ...]
    subject: str
    date: datetime | None
    text: str
    html: str | None
    attachments: tuple[Attachment, ...]
    headers: Mapping[str, str]
    mdn: MdnReport | None
    message_id_synthesized: bool = False


# ----------------------------------------------------------------------------- outbound


def _address(text: str, role: str, name: str = "") -> Address:
    normal = normalize_address(text)
    if normal is None:
        raise ValueError(f"invalid_address:{role}")
    local, _, domain = normal.rpartition("@")
    return Address(display_name=name, username=local, domain=domain)


def _sender_name(name: str, rpps: str | None) -> str:
    clean = header_safe(name, 120)
    if not rpps:
        return clean
    ident = header_safe(rpps, 20).replace("(", "").replace(")", "")
    return f"{clean} (RPPS {ident})" if clean else f"RPPS {ident}"


def build_outbound(mail: OutboundMail) -> bytes:
    """CRLF bytes of ``mail``; raises ValueError (a code) on an invalid address or id."""
    message_id = normalize_message_id(mail.message_id)
    if message_id is None:
        raise ValueError("invalid_message_id")
    parent, refs = thread_ids(mail.in_reply_to, mail.references, MAX_REFERENCES)
    when = mail.date if mail.date.tzinfo is not None else mail.date.replace(tzinfo=UTC)
    msg = EmailMessage(policy=_SEND)
    msg["From"] = _address(mail.from_addr, "from", _sender_name(mail.from_name, mail.rpps))
    msg["To"] = _address(mail.to_addr, "to")
    if mail.reply_to:
        msg["Reply-To"] = _address(mail.reply_to, "reply_to")
    msg["Subject"] = header_safe(mail.subject, 250)
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = message_id
    if parent is not None:
        msg["In-Reply-To"] = parent
    if refs:
        msg["References"] = " ".join(refs)
    if mail.request_mdn:
        msg["Disposition-Notification-To"] = str(_address(mail.from_addr, "from"))
    msg.set_content(mail.text, cte="quoted-printable")
    if mail.html is not None:
        msg.add_alternative(mail.html, subtype="html", cte="quoted-printable")
    for item in mail.attachments:
        ctype = item.content_type.strip().lower()
        if not _MIME_TYPE.fullmatch(ctype) or ctype.startswith(("message/", "multipart/")):
            ctype = "application/octet-stream"  # message/* may not be base64 (RFC 2046)
        maintype, _, subtype = ctype.partition("/")
        msg.add_attachment(
            item.data, maintype=maintype, subtype=subtype, filename=safe_filename(item.filename)
        )
        added = msg.get_payload()
        if isinstance(added, list) and isinstance(added[-1], Message):
            for name, value in item.headers.items():
                if re.fullmatch(r"X-[A-Za-z0-9-]{1,60}", name):
                    added[-1][name] = header_safe(value, 900)
    seed = hashlib.sha256(message_id.encode()).hexdigest()[:24]
    for level, node in enumerate(msg.walk()):
        if node is not msg:
            del node["MIME-Version"]
        if node.is_multipart():  # "=_" cannot occur in base64 or quoted-printable lines
            node.set_boundary(f"=_sg{level}_{seed}")
    raw = msg.as_bytes(policy=_SEND)
    if unexpected_headers(raw, _OUT_HEADERS):
        raise ValueError("header_injection")
    return raw


# ------------------------------------------------------------------------------ inbound


class _Guard:
    """Message factory for the parser: counts parts and depth while the tree is built."""

    def __init__(self, limits: MimeLimits) -> None:
        self.limits, self.parts, self.parser = limits, 0, object()

    def __call__(self, policy: Any = _TREE) -> Message:
        depth = len(getattr(self.parser, "_msgstack", ()))  # new part's depth; root is 0
        self.parts += 1
        if depth > self.limits.max_depth:
            raise HostileMail("too_deep", f"depth>{self.limits.max_depth}")
        if self.parts > self.limits.max_parts:
            raise HostileMail("too_many_parts", f"parts>{self.limits.max_parts}")
        return Message(policy=policy)


def _check_header_block(data: bytes, limit: int) -> None:
    """Size first; then line breaks that parsers disagree on (bare CR, LF among CRLF, NUL),
    which can smuggle a header past the relay's checks."""
    window = b"" if data.startswith((b"\n", b"\r\n")) else data[: limit + 4]
    ends = [i + 1 for i in (window.find(b"\n\n"), window.find(b"\n\r\n")) if i >= 0]
    block = window[: min(ends, default=len(window))]
    if len(block) > limit:
        raise HostileMail("oversize", f"headers>{limit}")
    if b"\x00" in block:
        raise HostileMail("header_injection", "nul")
    if re.search(rb"\r(?!\n)", block):
        raise HostileMail("header_injection", "bare_cr")
    if b"\r\n" in block and re.search(rb"(?<!\r)\n", block):
        raise HostileMail("header_injection", "bare_lf")


def _top_headers(msg: Message) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        text = unfold_header(str(value))
        if "\x00" in text or ("=?" in text and encoded_control(text)):
            raise HostileMail("header_injection", "encoded")
        headers.setdefault(name.lower(), []).append(text)
    return headers


def _decoded(name: str, value: str) -> Any:
    """The parsed header, or None; adjacent encoded words are joined first (RFC 2047 6.2,
    which the stdlib misses: a folded display name would come back with a space inside)."""
    try:
        return _READ.header_factory(name, _EW_GAP.sub("", value))
    except Exception:  # the header registry has bugs on hostile input: treat as garbled
        return None


def _addresses(values: list[str], name: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for value in values:
        header = _decoded(name, value)
        for addr in getattr(header, "addresses", ()):
            normal = normalize_address(str(addr.addr_spec))
            if normal is not None and all(normal != seen for _, seen in found):
                found.append((header_safe(str(addr.display_name or "")), normal))
    return found


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _text(data: bytes, charset: str | None) -> str:
    """Declared charset, else UTF-8 (undeclared 8-bit text is UTF-8 nowadays); never fails."""
    try:  # bytes.decode refuses non-text codecs (zlib, base64...): no bomb via charset
        text = data.decode(charset or "utf-8", "replace")
    except (LookupError, ValueError, TypeError):
        text = data.decode("utf-8", "replace")
    if charset in ("us-ascii", "ascii") and not data.isascii():
        text = data.decode("utf-8", "replace")
    return text.replace("\r\n", "\n").replace("\x00", "")


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except (ValueError, LookupError, TypeError):  # e.g. an RFC 2231 charset holding NUL
        return "attachment"
    if name is None:
        return None
    if "=?" in name:  # encoded-word filenames (not standard, sent by common clients)
        decoded = _decoded("subject", name)
        name = str(decoded) if decoded is not None else name
    return safe_filename(unfold_header(name))


def _dump(message: Message) -> bytes:
    try:
        return message.as_bytes(policy=_DUMP)
    except (UnicodeError, ValueError, LookupError):  # the generator trips on odd 8-bit text
        return message.as_string(policy=_DUMP).encode("utf-8", "replace")


class _Walk:
    """Second pass over the parsed tree: limits again, body parts, attachments."""

    def __init__(self, limits: MimeLimits) -> None:
        self.limits = limits
        self.parts = 0
        self.decoded = 0
        self.text: str | None = None
        self.html: str | None = None
        self.attachments: list[Attachment] = []

    def _spend(self, size: int) -> None:
        self.decoded += size
        if self.decoded > self.limits.max_decoded_bytes:
            raise HostileMail("decoded_too_large", f"decoded>{self.limits.max_decoded_bytes}")

    def visit(self, part: Message, depth: int, inside: bool = False) -> None:
        self.parts += 1
        if depth > self.limits.max_depth:
            raise HostileMail("too_deep", f"depth>{self.limits.max_depth}")
        if self.parts > self.limits.max_parts:
            raise HostileMail("too_many_parts", f"parts>{self.limits.max_parts}")
        if part.is_multipart():
            payload = part.get_payload()
            is_message = part.get_content_maintype() == "message"
            for child in payload:
                if isinstance(child, Message):
                    self.visit(child, depth + 1, inside or is_message)
            if is_message and not inside:  # a forwarded mail or report data: kept whole
                data = b"".join(_dump(c) for c in payload if isinstance(c, Message))
                self._spend(len(data))
                name = _filename(part) or (
                    "message.eml" if part.get_content_type() == "message/rfc822" else "report.txt"
                )
                self._attach(part, name, data)
        elif not inside:
            self._leaf(part)

    def _leaf(self, part: Message) -> None:
        # Decoding never grows data (base64, quoted-printable, uuencode): the raw size limit
        # already bounds this step; the sum is checked as parts are decoded.
        raw = part.get_payload(decode=True)
        data = raw if isinstance(raw, bytes) else b""
        self._spend(len(data))
        ctype = part.get_content_type()
        filename = _filename(part)
        body = ctype in ("text/plain", "text/html") or part.get_content_maintype() == "multipart"
        if body and filename is None and part.get_content_disposition() != "attachment":
            try:
                charset = part.get_content_charset()
            except (ValueError, LookupError, TypeError):
                charset = None
            if ctype == "text/html" and self.html is None:
                self.html = _text(data, charset)
                return
            if ctype != "text/html" and self.text is None:
                self.text = _text(data, charset)
                return
        extension = {"text/plain": ".txt", "text/html": ".html"}.get(ctype, ".bin")
        self._attach(part, filename or f"part-{self.parts}{extension}", data)

    def _attach(self, part: Message, filename: str, data: bytes) -> None:
        kept = {
            name.lower(): header_safe(unfold_header(str(value)), 900)
            for name, value in part.raw_items()
            if name.lower().startswith(_NAME_PREFIXES) or name.lower() in _PART_HEADERS
        }
        self.attachments.append(Attachment(filename, part.get_content_type(), data, kept))


def _parse(data: bytes, limits: MimeLimits) -> Message:
    guard = _Guard(limits)
    parser = BytesFeedParser(_factory=guard, policy=_TREE)
    guard.parser, guard.parts = parser, 0  # the constructor called the factory once
    parser.feed(data)
    return parser.close()


def _inbound(data: bytes, msg: Message, limits: MimeLimits) -> InboundMail:
    headers = _top_headers(msg)
    senders = _addresses(headers.get("from", []), "from")
    if not senders:
        raise HostileMail("no_sender", "from")
    from_name, from_addr = senders[0]
    recipients = _addresses(headers.get("to", []) + headers.get("cc", []), "to")
    message_id = normalize_message_id(next(iter(headers.get("message-id", [])), None))
    synthesized = message_id is None
    if message_id is None:  # a re-fetch of the same bytes maps to the same id
        message_id = f"<{hashlib.sha256(data).hexdigest()}@missing-message-id.invalid>"
    parent = normalize_message_id(next(iter(headers.get("in-reply-to", [])), None))
    found = _MSGIDS.findall(" ".join(headers.get("references", [])))
    refs = thread_ids(None, found, MAX_INBOUND_REFERENCES)[1]
    subject_header = _decoded("subject", next(iter(headers.get("subject", [])), ""))
    subject = header_safe(str(subject_header) if subject_header is not None else "", 998)
    walk = _Walk(limits)
    walk.visit(msg, 0)
    mdn = parse_mdn(msg) if msg.get_content_type() == "multipart/report" else None
    text = walk.text if walk.text is not None else html_to_text(walk.html or "")
    kept = {name: header_safe(headers[name][0], 998) for name in KEPT_HEADERS if name in headers}
    return InboundMail(
        message_id=message_id,
        in_reply_to=parent,
        references=tuple(refs),
        from_addr=from_addr,
        from_name=from_name,
        to_addrs=tuple(addr for _, addr in recipients),
        subject=subject,
        date=_date(next(iter(headers.get("date", [])), None)),
        text=text,
        html=walk.html,
        attachments=tuple(walk.attachments),
        headers=kept,
        mdn=mdn,
        message_id_synthesized=synthesized,
    )


def parse_inbound(raw: bytes, limits: MimeLimits = MimeLimits()) -> InboundMail:
    """The mail in ``raw``; raises only ``HostileMail`` (oversize, too_deep, too_many_parts,
    decoded_too_large, header_injection, no_sender, malformed)."""
    data = bytes(raw)
    if len(data) > limits.max_bytes:
        raise HostileMail("oversize", f"bytes>{limits.max_bytes}")
    _check_header_block(data, limits.max_header_bytes)
    try:
        return _inbound(data, _parse(data, limits), limits)
    except HostileMail:
        raise
    except RecursionError:
        raise HostileMail("too_deep", "recursion") from None
    except Exception as exc:  # the email package's own bugs on hostile input
        raise HostileMail("malformed", type(exc).__name__) from None
