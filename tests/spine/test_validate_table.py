"""Table tests for the pure transaction-shape checks (bridge/spine/validate.py).

One row per branch of ``validate_txn_id`` and ``validate_transaction``: every accepted
shape and every ``TransactionError`` (spec errcode, metrics reason, and the part of
the message that says where). tests/test_transactions.py covers the HTTP endpoint;
this table stands on its own and needs no server or database.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.antispam import encodable
from bridge.spine.validate import (
    MAX_EVENT_TYPE_LEN,
    MAX_TXN_ID_LEN,
    TransactionError,
    plain_json,
    validate_transaction,
    validate_txn_id,
)

REQUIRED = ("type", "event_id", "room_id", "sender")
# Identifier fields that must encode as UTF-8 (a JSON "\\ud800" escape parses into a
# lone surrogate that no database, log or request can encode).
UTF8_CHECKED = (*REQUIRED, "state_key")
LONE_SURROGATES: tuple[tuple[str, str], ...] = (
    ("high-alone", "\ud800"),
    ("low-alone", "\udc00"),
    ("high-inside-ascii", "!r\ud83d:sante.example"),
    ("inside-non-ascii", "!é\udfff:sante.example"),
    ("pair-reversed", "!r\ude00\ud83d:x"),
)
EXTENSIONS = (
    "ephemeral",
    "de.sorunome.msc2409.ephemeral",
    "to_device",
    "de.sorunome.msc2409.to_device",
)

DROP = object()


def ev(**overrides: Any) -> dict[str, Any]:
    """A minimal valid room event; ``key=DROP`` removes a field."""
    out: dict[str, Any] = {
        "type": "m.room.message",
        "event_id": "$e1",
        "room_id": "!r:sante.example",
        "sender": "@alice:sante.example",
    }
    for key, value in overrides.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------
# validate_txn_id


@pytest.mark.parametrize(
    "txn_id",
    [
        pytest.param("1", id="one-char"),
        pytest.param("m1710400000000.42", id="typical-synapse-id"),
        pytest.param("é" * 10, id="non-ascii"),
        pytest.param("x" * MAX_TXN_ID_LEN, id="exactly-max-length"),
    ],
)
def test_txn_id_accepted(txn_id: str) -> None:
    assert validate_txn_id(txn_id) is None


@pytest.mark.parametrize(
    "txn_id",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * (MAX_TXN_ID_LEN + 1), id="one-over-max-length"),
    ],
)
def test_txn_id_refused(txn_id: str) -> None:
    with pytest.raises(TransactionError) as info:
        validate_txn_id(txn_id)
    err = info.value
    assert (err.errcode, err.reason) == ("M_INVALID_PARAM", "bad_txn_id")
    assert str(MAX_TXN_ID_LEN) in err.message
    assert str(err) == err.message
    assert isinstance(err, ValueError)


# ---------------------------------------------------------------------------
# validate_transaction: accepted shapes


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"events": []}, id="no-events"),
        pytest.param({"events": [ev()]}, id="minimal-event-no-content"),
        pytest.param({"events": [ev(content={"body": "x"})]}, id="content-object"),
        pytest.param({"events": [ev(content=None)]}, id="content-null"),
        pytest.param({"events": [ev(type="t" * MAX_EVENT_TYPE_LEN)]}, id="type-at-max-length"),
        pytest.param({"events": [ev(type="org.example.custom")]}, id="custom-event-type"),
        pytest.param(
            {"events": [ev(state_key="", unsigned={"age": 1}, origin_server_ts=1)]},
            id="extra-event-fields",
        ),
        pytest.param(
            {"events": [ev(), ev(event_id="$e2", room_id="!s:sante.example")]},
            id="several-events",
        ),
        pytest.param({"events": [], "txn_extra": 1}, id="unknown-top-level-key"),
        # UTF-8 check of identifiers: valid non-ASCII (and a real surrogate pair, as
        # json.loads builds it from "\\ud83d\\ude00") passes; content is not checked.
        *(
            pytest.param({"events": [ev(**{key: "!é😀:santé.example"})]}, id=f"{key}-non-ascii")
            for key in UTF8_CHECKED
        ),
        pytest.param(
            json.loads(
                '{"events": [{"type": "m.room.message", "event_id": "$e\\ud83d\\ude00",'
                ' "room_id": "!r:x", "sender": "@a:x"}]}'
            ),
            id="json-escaped-surrogate-pair",
        ),
        pytest.param(
            {"events": [ev(content={"body": "\ud800"})]}, id="content-surrogate-not-checked"
        ),
        pytest.param({"events": [ev(state_key=3)]}, id="state-key-not-string-unchanged"),
        *(pytest.param({"events": [], key: []}, id=f"extension-{key}-list") for key in EXTENSIONS),
        pytest.param(
            {"events": [ev()], **{key: [{"type": "m.typing"}] for key in EXTENSIONS}},
            id="all-extensions-non-empty",
        ),
    ],
)
def test_transaction_accepted(data: dict[str, Any]) -> None:
    events = validate_transaction(data)
    assert events is data["events"]


# ---------------------------------------------------------------------------
# validate_transaction: refused shapes


# What every REQUIRED field is tried with: (id suffix, value, reason, message end).
REQUIRED_FIELD_CASES: tuple[tuple[str, Any, str, str], ...] = (
    ("absent", DROP, "event_missing_field", "is missing"),
    ("null", None, "event_missing_field", "is missing"),
    ("empty-string", "", "event_wrong_type", "must be a non-empty string"),
    ("number", 5, "event_wrong_type", "must be a non-empty string"),
)


def refused(data: Any, reason: str, fragment: str, id: str, errcode: str = "M_BAD_JSON") -> Any:
    return pytest.param(data, errcode, reason, fragment, id=id)


@pytest.mark.parametrize(
    ("data", "errcode", "reason", "fragment"),
    [
        # The body itself.
        refused([], "not_object", "JSON object", id="body-list"),
        refused(None, "not_object", "JSON object", id="body-null"),
        refused("events", "not_object", "JSON object", id="body-string"),
        refused(3, "not_object", "JSON object", id="body-number"),
        # The events array.
        refused({}, "missing_events", "'events'", id="events-missing"),
        refused({"events": None}, "missing_events", "'events'", id="events-null"),
        refused({"to_device": []}, "missing_events", "'events'", id="only-extensions"),
        refused({"events": {}}, "events_not_array", "'events' must be an array", id="events-obj"),
        refused({"events": "[]"}, "events_not_array", "must be an array", id="events-string"),
        refused({"events": 0}, "events_not_array", "must be an array", id="events-number"),
        # Each event is an object.
        refused({"events": [1]}, "event_not_object", "events[0] must be an object", id="ev-int"),
        refused({"events": [None]}, "event_not_object", "events[0]", id="event-null"),
        refused({"events": [[ev()]]}, "event_not_object", "events[0]", id="event-list"),
        refused(
            {"events": [ev(), "x"]},
            "event_not_object",
            "events[1] must be an object",
            id="second-event-not-object-index",
        ),
        # Required string fields: missing (absent or null), wrong type or empty.
        *(
            refused(
                {"events": [ev(**{key: value})]},
                reason,
                f"events[0].{key} {says}",
                id=f"{key}-{case}",
            )
            for case, value, reason, says in REQUIRED_FIELD_CASES
            for key in REQUIRED
        ),
        refused(
            {"events": [ev(sender=["@a:x"])]},
            "event_wrong_type",
            "events[0].sender must be a non-empty string",
            id="sender-list",
        ),
        refused(
            {"events": [ev(), ev(room_id=DROP)]},
            "event_missing_field",
            "events[1].room_id is missing",
            id="second-event-missing-field-index",
        ),
        # Identifiers holding a lone surrogate (valid JSON, not encodable as UTF-8).
        *(
            refused(
                {"events": [ev(**{key: value})]},
                "event_bad_string",
                f"events[0].{key} is not valid UTF-8",
                id=f"{key}-lone-surrogate-{case}",
            )
            for case, value in LONE_SURROGATES
            for key in UTF8_CHECKED
        ),
        refused(
            json.loads(
                '{"events": [{"type": "m.room.message", "event_id": "$e1",'
                ' "room_id": "!r\\ud800:x", "sender": "@a:x"}]}'
            ),
            "event_bad_string",
            "events[0].room_id is not valid UTF-8",
            id="room_id-lone-surrogate-from-json-escape",
        ),
        refused(
            {"events": [ev(), ev(event_id="$e2", sender="@\udc00:x")]},
            "event_bad_string",
            "events[1].sender",
            id="second-event-lone-surrogate-index",
        ),
        refused(
            {"events": [ev(room_id="!\ud800:x", content=[])]},
            "event_bad_string",
            "events[0].room_id",
            id="lone-surrogate-reported-before-content-error",
        ),
        # Event type length.
        refused(
            {"events": [ev(type="t" * (MAX_EVENT_TYPE_LEN + 1))]},
            "event_bad_type",
            "events[0].type is longer than 255",
            id="type-one-over-max-length",
        ),
        # Content.
        refused(
            {"events": [ev(content=[])]},
            "event_wrong_type",
            "events[0].content must be an object",
            id="content-list",
        ),
        refused(
            {"events": [ev(content="hi")]},
            "event_wrong_type",
            "events[0].content must be an object",
            id="content-string",
        ),
        # Optional extension arrays.
        *(
            refused(
                {"events": [], key: {}},
                "extension_wrong_type",
                f"'{key}' must be an array",
                id=f"extension-{key}-object",
            )
            for key in EXTENSIONS
        ),
        refused(
            {"events": [], "to_device": None},
            "extension_wrong_type",
            "'to_device' must be an array",
            id="extension-present-but-null",
        ),
        # Order: events are checked before extensions, the first bad event wins.
        refused(
            {"events": [ev(content=[])], "to_device": 3},
            "event_wrong_type",
            "events[0].content",
            id="event-error-reported-before-extension-error",
        ),
        refused(
            {"events": [ev(event_id=DROP), 7]},
            "event_missing_field",
            "events[0].event_id",
            id="first-bad-event-reported",
        ),
        refused(
            {"events": [ev(type=DROP, sender=5)]},
            "event_missing_field",
            "events[0].type",
            id="fields-checked-in-order-type-first",
        ),
    ],
)
def test_transaction_refused(data: Any, errcode: str, reason: str, fragment: str) -> None:
    # The same answer whether the raw body is given (the endpoint's fast path) or not,
    # whichever way the body spells its strings.
    for raw in (None, *_bodies(data)):
        with pytest.raises(TransactionError) as info:
            validate_transaction(data, raw=raw)
        _check_refusal(info.value, errcode, reason, fragment)


def _bodies(data: Any) -> list[bytes]:
    """``data`` as a homeserver could send it: escaped to ASCII, or in raw UTF-8."""
    return [
        json.dumps(data).encode(),
        json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogatepass"),
    ]


def _check_refusal(err: TransactionError, errcode: str, reason: str, fragment: str) -> None:
    assert (err.errcode, err.reason) == (errcode, reason)
    assert fragment in err.message
    assert str(err) == err.message
    err.message.encode("utf-8")  # the 400 answer can always be sent (never echoes a value)


# ---------------------------------------------------------------------------
# plain_json: when the per-field encoding checks may be skipped


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        pytest.param(b'{"events":[]}', True, id="ascii-no-escape"),
        pytest.param(b'{"a":"bXlfY2lwaGVydGV4dA=="}', True, id="base64-ciphertext"),
        pytest.param(b'{"a":"\\ud800"}', False, id="lone-surrogate-escape"),
        pytest.param(b'{"a":"\\u0000"}', False, id="nul-escape"),
        pytest.param(b'{"a":"\\uD800"}', False, id="lone-surrogate-escape-upper"),
        pytest.param(b'{"a":"\\udfff"}', False, id="low-surrogate-escape"),
        pytest.param(b'{"a":"\\ud83d\\ude00"}', False, id="surrogate-pair-cautious"),
        pytest.param(b'{"a":"\\\\u0000"}', False, id="escaped-backslash-cautious"),
        pytest.param(b'"\\u00', False, id="escape-cut-at-the-end"),
        pytest.param(b'{"a":"say \\"hi\\""}', True, id="other-escapes"),
        pytest.param(b'{"a":"H\\u00e9l\\u00e8ne"}', True, id="escaped-accents"),
        pytest.param(b'{"a":"\\u0041\\uc000\\ue000"}', True, id="escapes-outside-d800"),
        pytest.param('{"a":"Hélène"}'.encode(), True, id="utf8"),
        pytest.param('{"a":"Hélène"}'.encode("utf-16"), False, id="utf16"),
        pytest.param('{"a":"Hélène"}'.encode("utf-32-le"), False, id="utf32"),
        pytest.param(b'{"a":"\xed\xa0\x80"}', False, id="utf8-encoded-surrogate"),
        pytest.param('{"a":"한"}'.encode(), False, id="hangul-ed-cautious"),
    ],
)
def test_plain_json(raw: bytes, plain: bool) -> None:
    assert plain_json(raw) is plain
    if plain and raw.startswith(b"{"):  # and what it promises holds
        assert all(encodable(v) and "\x00" not in v for v in _strings(json.loads(raw)))


def _strings(value: Any) -> list[str]:
    """Every string in a parsed JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)


@settings(max_examples=400, deadline=None)
@given(
    st.recursive(
        st.none() | st.integers() | _TEXT,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
        max_leaves=12,
    ),
    st.sampled_from(["ascii", "utf-8", "utf-16", "utf-32"]),
)
def test_plain_json_never_passes_a_body_with_a_bad_string(data: Any, encoding: str) -> None:
    """Whatever the strings (lone surrogates, NUL, any plane) and however the body is
    encoded, a body ``plain_json`` passes parses into storable strings only."""
    if encoding == "ascii":
        raw = json.dumps(data).encode()
    else:
        raw = json.dumps(data, ensure_ascii=False).encode(encoding, "surrogatepass")
    if plain_json(raw):
        assert all(encodable(v) and "\x00" not in v for v in _strings(json.loads(raw)))


def test_every_bad_identifier_body_is_not_plain() -> None:
    """Every body that holds an identifier the checks refuse is one they are run on."""
    for _, value in LONE_SURROGATES:
        for raw in _bodies({"events": [ev(room_id=value)]}):
            assert not plain_json(raw)
    for raw in _bodies({"events": [ev(sender="@a\x00:x")]}):
        assert not plain_json(raw)
