"""Pure mail rules: identifiers, addresses, header text, retry timing and mail loops.

Everything is a function of its arguments (no clock, no I/O) so the outbound queue, the
inbound poller and the tests decide identically. Results are codes, never sentences.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.message
import email.policy
import hashlib
import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from bridge.mail.allowlist import normalize_domain as allowlist_domain

__all__ = [
    "RetrySchedule",
    "classify_reply",
    "encoded_control",
    "header_safe",
    "is_own_message_id",
    "loop_reason",
    "message_id_for",
    "normalize_address",
    "normalize_domain",
    "normalize_message_id",
    "room_tag",
    "safe_filename",
    "tag_of",
    "tagged_address",
    "thread_ids",
    "unexpected_headers",
    "unfold_header",
]

MAX_ADDRESS = 254
MAX_LOCAL = 64
# RFC 5322 atext (dot-atom local parts); quoted local parts are refused: nobody in the
# health network needs them and they make tagging and comparison ambiguous.
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_MSGID = re.compile(r"<([^<>\s]+)>")
_TAG = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Bidirectional overrides can make a subject or a name read differently than it is.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_AUTO_REPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-autoreply-from", "x-mail-autoreply")
_BULK = frozenset({"bulk", "junk", "list", "auto_reply", "auto-reply"})


def message_id_for(event_id: str, domain: str) -> str:
    """Message-ID of the mail made from a Matrix event: a retry re-sends the same id."""
    digest = hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"<sg.{digest}@{domain.strip().lower()}>"


def is_own_message_id(message_id: str, domain: str) -> bool:
    """True when ``message_id`` has the shape ``message_id_for`` gives for ``domain``."""
    text = message_id.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    local, at, right = text.rpartition("@")
    if not at or right.lower() != domain.strip().lower():
        return False
    return re.fullmatch(r"sg\.[0-9a-f]{32}", local) is not None


def normalize_message_id(text: str | None) -> str | None:
    """``<local@domain>`` from a field value, tolerating spaces, folding and noise around it.

    Only whitespace is removed: the id itself is compared exactly (RFC 5322 ids are
    case-sensitive). None when there is no plausible id.
    """
    if not text:
        return None
    compact = "".join(text.split())
    found = _MSGID.search(compact)
    inner = found.group(1) if found else compact.strip("<>")
    if not inner or "@" not in inner or len(inner) > 250 or not inner.isprintable():
        return None
    if any(c in inner for c in "<>"):
        return None
    return f"<{inner}>"


def thread_ids(
    in_reply_to: str | None, references: Iterable[str], limit: int = 20
) -> tuple[str | None, list[str]]:
    """In-Reply-To and References of a reply: parent last, no duplicates, at most ``limit``
    ids (the thread root and the most recent ancestors, as RFC 5322 3.6.4 suggests)."""
    parent = normalize_message_id(in_reply_to)
    refs: list[str] = []
    for ref in references:
        normal = normalize_message_id(ref)
        if normal is not None and normal != parent and normal not in refs:
            refs.append(normal)
    if parent is not None:
        refs.append(parent)
    if len(refs) > limit:
        refs = [refs[0], *refs[len(refs) - limit + 1 :]]
    return parent, refs


def room_tag(room_id: str) -> str:
    """Stable 12-hex tag naming a room in a ``+tag`` address without revealing its ID."""
    return hashlib.sha256(room_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def tagged_address(mailbox: str, tag: str) -> str:
    """``local+tag@domain``: replies to this address find their room again."""
    address = normalize_address(mailbox)
    if address is None:
        raise ValueError("invalid_address")
    if _TAG.fullmatch(tag) is None:
        raise ValueError("invalid_tag")
    local, _, domain = address.rpartition("@")
    result = f"{local}+{tag.lower()}@{domain}"
    if normalize_address(result) is None:
        raise ValueError("invalid_address")
    return result


def tag_of(address: str) -> str | None:
    """The ``+tag`` of an address (after the last ``+``), lowercased; None without one."""
    normal = normalize_address(address)
    if normal is None:
        return None
    local = normal.rpartition("@")[0]
    _, plus, tag = local.rpartition("+")
    if not plus or _TAG.fullmatch(tag) is None:
        return None
    return tag.lower()


def normalize_domain(text: str) -> str | None:
    """Lowercase ASCII (IDNA A-label) form of a domain; None if it is not a valid one.

    The allow-list's own normalisation, so both sides compare the same way: it refuses a
    Unicode name that IDNA 2003 would map lossily (``straße`` → ``strasse``), which could
    otherwise pass for another, allow-listed domain.
    """
    return allowlist_domain(text)


def normalize_address(text: str) -> str | None:
    """``local@domain`` with the domain lowercased and IDNA-encoded; None if invalid.

    The local part keeps its case (RFC 5321 lets the receiving server decide).
    """
    candidate = text.strip()
    if not candidate or len(candidate) > MAX_ADDRESS or candidate.count("@") != 1:
        return None
    if any(c.isspace() or unicodedata.category(c) == "Cc" for c in candidate):
        return None
    local, _, domain = candidate.partition("@")
    if not local or len(local) > MAX_LOCAL:
        return None
    if not all(_ATEXT.fullmatch(atom) for atom in local.split(".")):
        return None
    ascii_domain = normalize_domain(domain)
    if ascii_domain is None or domain.endswith("."):
        return None
    result = f"{local}@{ascii_domain}"
    return result if len(result) <= MAX_ADDRESS else None


def classify_reply(code: int | None) -> Literal["temporary", "permanent"]:
    """5xx is permanent; 4xx, unexpected codes and no reply at all (None) are retried."""
    if code is not None and 500 <= code <= 599:
        return "permanent"
    return "temporary"


@dataclass(frozen=True)
class RetrySchedule:
    """Capped exponential backoff, and when to stop trying (then bounce, never drop)."""

    base_seconds: float = 60
    factor: float = 2.0
    max_seconds: float = 3600
    give_up_seconds: float = 5 * 86400

    def delay(self, attempt: int) -> float:
        """Wait after ``attempt`` failed tries (1 = the first failure waits ``base_seconds``)."""
        if self.factor <= 1:
            return float(min(self.base_seconds, self.max_seconds))
        try:
            value = self.base_seconds * float(self.factor) ** max(0, attempt - 1)
        except OverflowError:  # absurd attempt numbers: simply the cap
            return float(self.max_seconds)
        return float(min(value, self.max_seconds))

    def given_up(self, first_try_at: float, now: float) -> bool:
        """True once ``give_up_seconds`` have passed since the first try."""
        return now - first_try_at >= self.give_up_seconds


def header_safe(text: str, limit: int = 200) -> str:
    """Text that cannot break out of a header: no CR/LF/NUL/controls, spaces collapsed.

    Bidirectional overrides go too (they disguise names); at most ``limit`` characters.
    ``=?`` gets an invisible zero-width space: the stdlib decodes encoded-word look-alikes
    when a header is set and, before CVE-2024-6923 was fixed (Python 3.11.10), wrote the
    decoded CR/LF out raw, so ``=?utf-8?q?=0D=0ABcc:...?=`` could inject a header.
    Lone surrogates (the email package's stand-ins for bytes that are not UTF-8, e.g. in
    ``=?utf-8?q?=FF?=``) become U+FFFD: such a name could not be stored nor sent.
    """
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    cleaned = "".join(
        " " if unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in _BIDI else c for c in text
    )
    collapsed = " ".join(cleaned.split())[: max(0, limit)].rstrip()
    return collapsed.replace("=?", "=\u200b?")


def safe_filename(name: str) -> str:
    """A file name for a header or a Matrix event: no directories, controls or leading dots."""
    base = header_safe(name.replace("\\", "/").rsplit("/", 1)[-1], 200).lstrip(". ")
    return base or "attachment"


def unfold_header(value: str) -> str:
    """A raw header value on one line; raw 8-bit bytes (surrogate-escaped) read as UTF-8."""
    text = value.replace("\r", "").replace("\n", "")
    if any("\udc80" <= c <= "\udcff" for c in text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def encoded_control(value: str) -> bool:
    """True when an RFC 2047 encoded word in ``value`` decodes to CR, LF or NUL."""
    try:
        chunks = email.header.decode_header(value)
    except (email.errors.HeaderParseError, ValueError, LookupError):
        return False  # garbled words: the decoded text goes through header_safe anyway
    return any(isinstance(c, bytes) and any(b in c for b in b"\r\n\x00") for c, _ in chunks)


def unexpected_headers(raw: bytes, top: Collection[str]) -> list[str]:
    """Header names in a mail we built that we did not put there (lowercased).

    Allowed: ``top`` (lowercase) at the top level; ``content-*``, ``mime-version`` and
    ``x-*`` everywhere. A check of our own output against library bugs like CVE-2024-6923.
    """
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    found: list[str] = []
    stack = [message]
    while stack:  # multipart children only: message/* bodies (MDN fields) are content
        part = stack.pop()
        for name in part.keys():
            low = name.lower()
            if low.startswith(("content-", "x-")) or low == "mime-version":
                continue
            if part is not message or low not in top:
                found.append(low)
        payload = part.get_payload()
        if part.get_content_maintype() == "multipart" and isinstance(payload, list):
            stack.extend(child for child in payload if isinstance(child, email.message.Message))
    return found


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def loop_reason(headers: Mapping[str, str], own_domain: str) -> str | None:
    """Why an inbound mail must not be bridged (it would start or feed a mail loop).

    Codes: ``own_message`` (one of our Message-IDs came back), ``auto_submitted``
    (RFC 3834, any value but ``no``), ``auto_reply_header`` (X-Autoreply and kin),
    ``bulk_precedence`` (Precedence bulk/junk/list). None when it may be bridged.
    MDNs carry ``Auto-Submitted`` too: callers read their report before asking this.
    """
    lowered = _lowered(headers)
    message_id = lowered.get("message-id")
    if message_id and is_own_message_id(message_id, own_domain):
        return "own_message"
    auto = lowered.get("auto-submitted")
    if auto is not None:
        keyword = auto.split(";", 1)[0].split("(", 1)[0].strip().lower()
        if keyword != "no":
            return "auto_submitted"
    for name in _AUTO_REPLY_HEADERS:
        value = lowered.get(name)
        if value is not None and value.strip().lower() not in ("", "no", "false", "0"):
            return "auto_reply_header"
    precedence = lowered.get("precedence")
    if precedence is not None and precedence.strip().lower() in _BULK:
        return "bulk_precedence"
    return None
