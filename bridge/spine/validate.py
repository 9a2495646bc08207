"""Pure validation of an appservice transaction body, before it is stored and acked.

Only the shape is checked (what the spec makes required, with the right JSON types):
custom event types are legitimate in Matrix and are accepted, stored and ignored by
the handlers; refusing them would stall the homeserver's transaction stream.

Identifier fields (``type``, ``event_id``, ``room_id``, ``sender``, ``state_key``) must
also be encodable as UTF-8: JSON allows a lone surrogate escape (``"\\ud800"``), which
parses into a Python string that no database, log line or outgoing request can encode.
Such an event is refused here, before anything is stored; so is a NUL (``"\\u0000"``),
which PostgreSQL's text columns refuse (a NUL in a transaction ID made the insert fail,
a 503 the homeserver retried for ever; in a room ID it made the retention ledger's write
fail on every retry). The check is on the hot path, so it is limited to those fields and
takes the ``str.isascii()`` fast path first; given the raw body, it is skipped when no
string parsed from it can hold either (``plain_json``), as in production bodies:
megolm ciphertext is base64, and accented names are plain UTF-8 or ``\\u00e9``.
"""

from __future__ import annotations

from typing import Any

from bridge.core.antispam import encodable
from bridge.spine.ephemeral import receipt_events

MAX_TXN_ID_LEN = 255
MAX_EVENT_TYPE_LEN = 255
_REQUIRED_STR = ("type", "event_id", "room_id", "sender")
_UTF8_CHECKED = (*_REQUIRED_STR, "state_key")
_OPTIONAL_LISTS = (
    "ephemeral",
    "de.sorunome.msc2409.ephemeral",
    "to_device",
    "de.sorunome.msc2409.to_device",
)


class TransactionError(ValueError):
    """Why a transaction body is refused; ``errcode`` follows the Matrix spec."""

    def __init__(self, errcode: str, message: str, reason: str) -> None:
        super().__init__(message)
        self.errcode = errcode
        self.message = message
        self.reason = reason  # short, bounded label for metrics


def _storable(value: str) -> bool:
    """Encodable as UTF-8 and without NUL: what every database text column accepts."""
    return "\x00" not in value and encodable(value)


def validate_txn_id(txn_id: str) -> None:
    if not txn_id or len(txn_id) > MAX_TXN_ID_LEN:
        raise TransactionError(
            "M_INVALID_PARAM", f"txnId must be 1 to {MAX_TXN_ID_LEN} characters", "bad_txn_id"
        )
    if not _storable(txn_id):
        raise TransactionError(
            "M_INVALID_PARAM", "txnId must be valid UTF-8 without NUL", "bad_txn_id"
        )


#: Second characters of a ``\\u`` escape in the surrogate range (D800-DFFF).
_SURROGATE_HEX = frozenset(b"89abcdefABCDEF")


def plain_json(raw: bytes) -> bool:
    """No string parsed from ``raw`` can hold a lone surrogate or a NUL.

    ``json.loads`` decodes bytes with ``surrogatepass``, as UTF-8 unless NUL bytes say
    UTF-16 or UTF-32, and refuses raw control characters. So either needs a NUL byte (a
    UTF-16/32 body: its ASCII punctuation has them), an ``0xED`` byte (the UTF-8 lead
    byte of U+D000-DFFF, encoded surrogates included), or a ``\\u0000`` or
    ``\\uD800``-``\\uDFFF`` escape. A ``memchr`` per backslash and a look at each ``\\u``
    escape: a few microseconds for a 70 KB transaction, against 25-30 µs for the
    per-field checks. Cautious, never wrong the other way: a valid surrogate pair,
    Hangul in raw UTF-8 or an escaped backslash before ``u0000`` only send the body to
    those checks. A French display name keeps a body plain, in raw UTF-8 as Synapse
    sends it (canonical JSON) or escaped (``\\u00e9``).
    """
    if b"\x00" in raw or b"\xed" in raw:
        return False
    # Each backslash by ``memchr``: finding the two bytes of ``\\u`` took ~60 µs on 70 KB.
    at = raw.find(b"\\")
    while at >= 0:
        if raw[at + 1 : at + 2] == b"u":
            hex4 = raw[at + 2 : at + 6]
            if len(hex4) < 4 or hex4 == b"0000" or (hex4[0] in b"dD" and hex4[1] in _SURROGATE_HEX):
                return False
        at = raw.find(b"\\", at + 1)
    return True


def validate_transaction(data: Any, *, raw: bytes | None = None) -> list[dict[str, Any]]:
    """Return the transaction's room events, or raise ``TransactionError`` saying what is
    wrong. ``raw``: the body ``data`` was parsed from, to skip the encoding checks when
    ``plain_json`` says they cannot fail."""
    check_text = raw is None or not plain_json(raw)
    if not isinstance(data, dict):
        raise TransactionError("M_BAD_JSON", "transaction body must be a JSON object", "not_object")
    events = data.get("events")
    if events is None:
        raise TransactionError("M_BAD_JSON", "missing required field 'events'", "missing_events")
    if not isinstance(events, list):
        raise TransactionError("M_BAD_JSON", "'events' must be an array", "events_not_array")
    for i, ev in enumerate(events):
        if not isinstance(ev, dict):
            raise TransactionError(
                "M_BAD_JSON", f"events[{i}] must be an object", "event_not_object"
            )
        for key in _REQUIRED_STR:
            value = ev.get(key)
            if value is None:
                raise TransactionError(
                    "M_BAD_JSON", f"events[{i}].{key} is missing", "event_missing_field"
                )
            if not isinstance(value, str) or not value:
                raise TransactionError(
                    "M_BAD_JSON",
                    f"events[{i}].{key} must be a non-empty string",
                    "event_wrong_type",
                )
        for key in _UTF8_CHECKED if check_text else ():
            value = ev.get(key)
            if isinstance(value, str) and not _storable(value):
                raise TransactionError(
                    "M_BAD_JSON",
                    f"events[{i}].{key} is not valid UTF-8 (lone surrogate) or holds a NUL",
                    "event_bad_string",
                )
        if len(ev["type"]) > MAX_EVENT_TYPE_LEN:
            raise TransactionError(
                "M_BAD_JSON", f"events[{i}].type is longer than 255 characters", "event_bad_type"
            )
        content = ev.get("content")
        if content is not None and not isinstance(content, dict):
            raise TransactionError(
                "M_BAD_JSON", f"events[{i}].content must be an object", "event_wrong_type"
            )
    for key in _OPTIONAL_LISTS:
        if key in data and not isinstance(data[key], list):
            raise TransactionError(
                "M_BAD_JSON", f"'{key}' must be an array", "extension_wrong_type"
            )
    return events


def transaction_events(data: Any, *, raw: bytes | None = None) -> list[dict[str, Any]]:
    """``validate_transaction``'s room events, then the read receipts as pseudo-events
    (``spine.ephemeral``): what the intake hands over, and what a stored row not yet
    validated yields when read back (``spine.pending.checked_events``)."""
    events = validate_transaction(data, raw=raw)
    if "ephemeral" in data or "de.sorunome.msc2409.ephemeral" in data:
        events = [*events, *receipt_events(data)]  # as queue.events_of reads them back
    return events
