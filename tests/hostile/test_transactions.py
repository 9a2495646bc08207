"""Hostile transaction bodies: PUT /_matrix/app/v1/transactions/{txnId} at volume.

Structure-aware inputs: transactions shaped like Synapse's with one field made hostile
(wrong JSON types, lone surrogates, NUL, giant strings, deep nesting, huge numbers,
NaN), raw JSON text with duplicate keys, escapes and literals Python's parser accepts
but no database does, hostile transaction IDs in the path. The contract: 200, or a
precise 400 (``M_BAD_JSON``/``M_NOT_JSON``/``M_INVALID_PARAM``) or 413; never a 5xx nor
an unhandled error; what is acked reads back (``events_of``) and every identifier that
reaches the handlers can be stored; memory bounded by the body's size.
tests/test_bad_input_property.py covers random JSON trees; this covers the edges.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.app import SanteGuard
from bridge.core.antispam import encodable
from bridge.spine.ephemeral import MAX_RECEIPTS, receipt_events
from bridge.spine.queue import events_of, storable_text
from bridge.spine.validate import TransactionError, validate_transaction, validate_txn_id
from tests.helpers import HS_TOKEN, make_config
from tests.hostile.budget import MiB, Tally, budget
from tests.hostile.serve import ErrorLog, request, run_examples

IDS = ("type", "event_id", "room_id", "sender", "state_key")

# Text that no database, log line or outgoing request should have to carry.
NASTY_TEXT = st.sampled_from(
    ["\ud800", "a\udfffb", "\x00", "x\x00y", "\u202e", "\ufeff", "\r\n", "", " ", "\\", "𝕏" * 3]
)
GIANT = st.integers(1, 64).map(lambda k: "é" * (k * 1024))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    NASTY_TEXT,
)
TREES = st.recursive(
    SCALARS,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=15,
)


def _event(n: int) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": f"$e{n}",
        "room_id": "!r:santeguard.test",
        "sender": "@a:santeguard.test",
        "origin_server_ts": 1_700_000_000_000 + n,
        "content": {"msgtype": "m.text", "body": "bonjour"},
    }


@st.composite
def hostile_event(draw: st.DrawFn, n: int = 0) -> Any:
    """A valid event with zero to three fields replaced, removed or added."""
    ev: dict[str, Any] = _event(n)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from([*IDS, "content", "origin_server_ts", "unsigned", "x"]))
        action = draw(st.sampled_from(["junk", "nasty", "giant", "tree", "drop", "suffix"]))
        if action == "drop":
            ev.pop(key, None)
        elif action == "junk":
            ev[key] = draw(SCALARS)
        elif action == "nasty":
            ev[key] = draw(NASTY_TEXT)
        elif action == "giant":
            ev[key] = draw(GIANT)
        elif action == "tree":
            ev[key] = draw(TREES)
        else:  # a valid-looking identifier with something hostile inside
            ev[key] = str(ev.get(key, "k")) + draw(NASTY_TEXT)
    return ev if draw(st.integers(0, 15)) else draw(TREES)


@st.composite
def receipts(draw: st.DrawFn) -> list[Any]:
    """``m.receipt`` ephemeral data with hostile room, event and user IDs."""
    ident = st.one_of(
        st.just("!r:santeguard.test"),
        st.just("@a:santeguard.test"),
        NASTY_TEXT,
        st.text(max_size=10),
        SCALARS,
    )
    readers = st.dictionaries(
        ident.filter(lambda v: isinstance(v, str)),
        st.one_of(st.fixed_dictionaries({"ts": SCALARS}), SCALARS),
        max_size=3,
    )
    content = st.dictionaries(
        ident.filter(lambda v: isinstance(v, str)),
        st.one_of(st.fixed_dictionaries({"m.read": readers}), SCALARS),
        max_size=3,
    )
    item = st.fixed_dictionaries(
        {"type": st.one_of(st.just("m.receipt"), SCALARS)},
        optional={"room_id": ident, "content": st.one_of(content, SCALARS)},
    )
    return draw(st.lists(item, max_size=4))


@st.composite
def transactions(draw: st.DrawFn) -> Any:
    body: dict[str, Any] = {
        "events": [draw(hostile_event(i)) for i in range(draw(st.integers(0, 4)))]
    }
    for key in draw(
        st.sets(
            st.sampled_from(["ephemeral", "de.sorunome.msc2409.ephemeral", "to_device", "events"]),
            max_size=2,
        )
    ):
        body[key] = draw(st.one_of(receipts(), SCALARS, TREES))
    return body if draw(st.integers(0, 20)) else draw(TREES)


def _deep(depth: int, open_: str, close: str) -> bytes:
    return ('{"events": [' + open_ * depth + close * depth + "]}").encode()


# Raw JSON text: what json.dumps never writes but a peer may send.
RAW = st.one_of(
    st.just(b'{"events": [], "events": 5}'),  # duplicate key: the last wins
    st.just(b'{"events": 5, "events": []}'),
    st.just(
        b'{"events": [{"type": "a", "type": 7, "event_id": "$e", "room_id": "!r",'
        b' "sender": "@a:x"}]}'
    ),
    st.just(b'\xef\xbb\xbf{"events": []}'),  # a BOM
    st.just(b'{"events": []}\x00'),
    st.just(b'{"events": [NaN, Infinity, -Infinity]}'),
    st.just(b'{"events": [], "x": 1e999}'),
    st.builds(lambda n: b'{"events": [], "x": ' + b"9" * n + b"}", st.integers(4000, 5000)),
    st.builds(
        lambda e: (
            b'{"events": [{"type": "m.room.message", "event_id": "$e", "room_id": "!r:x",'
            b' "sender": "@a:x", "content": {"body": "' + e + b'"}}]}'
        ),
        st.sampled_from([b"\\u0000", b"\\ud800", b"\\udc00\\ud800", b"\\uDFFF"]),
    ),
    st.builds(
        _deep, st.integers(10, 3000), st.sampled_from(["[", '{"a":']), st.sampled_from(["]", "}"])
    ),
    st.builds(lambda d: _deep(d, "[", "]"), st.integers(3000, 200_000)),
    st.binary(max_size=64).map(lambda b: b'{"events": [' + b + b"]}"),
)
TXN_IDS = st.one_of(
    st.text(min_size=1, max_size=300),
    st.sampled_from(
        ["a\x00b", "\x00", "\ud800", "a\udfff", "..", "../x", "%2e%2e", " ", "é" * 200]
    ),
)


def _acked_events_are_storable(body: bytes) -> None:
    """What the dispatcher will hand the handlers can be stored and sent."""
    for ev in events_of(body):
        for key in IDS:
            value = ev.get(key)
            if isinstance(value, str):
                assert encodable(value), (key, value)
                assert "\x00" not in value, (key, value)


# -- pure: the validator and what reads a stored body back ---------------------------


@budget(400)
@given(data=st.one_of(transactions(), RAW.map(lambda raw: ("raw", raw))))
def test_validate_is_total_and_consistent(tally: Tally, data: Any) -> None:
    """Validation returns events or raises TransactionError; what it accepts reads back."""
    if isinstance(data, tuple):
        raw = data[1]
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):
            tally.count("not_json")
            return
    else:
        parsed = data
        raw = json.dumps(data).encode("utf-8", "surrogatepass")
    # The endpoint passes the raw body (its fast path skips the encoding checks when no
    # string can fail them): the same answer as without it.
    try:
        fast: Any = validate_transaction(parsed, raw=raw)
    except TransactionError as e:
        fast = (e.errcode, e.reason, e.message)
    try:
        events = tally_call(tally, raw, lambda: validate_transaction(parsed))
    except TransactionError as e:
        assert e.errcode == "M_BAD_JSON" and e.message and e.reason
        assert fast == (e.errcode, e.reason, e.message)
        tally.count("refused")
        return
    assert fast is events
    tally.count("accepted")
    assert len(events) == len(parsed["events"])
    assert len(receipt_events(parsed)) <= MAX_RECEIPTS
    _acked_events_are_storable(raw)
    for ev in events:
        for key in IDS:
            text = storable_text(ev.get(key))
            assert encodable(text) and "\x00" not in text and len(text) <= 255


def tally_call(tally: Tally, raw: bytes, fn: Any) -> Any:
    with tally.memory(len(raw), allowance=2 * MiB, per_byte=4):
        return fn()


@budget(200)
@given(txn_id=TXN_IDS)
def test_txn_ids_are_refused_or_storable(tally: Tally, txn_id: str) -> None:
    try:
        validate_txn_id(txn_id)
    except TransactionError as e:
        assert (e.errcode, e.reason) == ("M_INVALID_PARAM", "bad_txn_id")
        tally.count("refused")
        return
    tally.count("accepted")
    assert encodable(txn_id) and "\x00" not in txn_id and 1 <= len(txn_id) <= 255


# -- through a real SantéGuard: no 5xx, nothing unhandled ----------------------------


@pytest.fixture
async def app(db_uri: str) -> AsyncIterator[SanteGuard]:
    instance = SanteGuard(make_config(db_uri, appservice={"max_body_bytes": 2 * MiB}))
    await instance.start()
    yield instance
    await instance.stop()


async def _handled(app: SanteGuard) -> None:
    """Waits (bounded) until every acked transaction was handled."""
    for _ in range(300):
        if not await app.db.fetchval("SELECT COUNT(*) FROM txn WHERE status = 'pending'"):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("acked transactions still pending after 30 s")


async def test_endpoint_answers_200_or_precise_4xx(app: SanteGuard, tally: Tally) -> None:
    base = f"{app.config.appservice.address}/_matrix/app/v1/transactions/"
    seq = iter(range(10**9))
    # A ledger write that fails is retried for ever and holds back every later entry.
    with ErrorLog("santeguard.retention.ledger", "santeguard.queue") as errors:
        async with aiohttp.ClientSession() as session:

            def check(run: Any) -> None:
                @budget(150)
                @given(
                    body=st.one_of(
                        transactions().map(
                            lambda d: json.dumps(d).encode("utf-8", "surrogatepass")
                        ),
                        RAW,
                    ),
                    txn=st.one_of(
                        st.builds(lambda: f"t{next(seq)}"), TXN_IDS.map(lambda t: f"{t}{next(seq)}")
                    ),
                )
                def example(body: bytes, txn: str) -> None:
                    path = quote(txn.encode("utf-8", "surrogatepass"), safe="")
                    with tally.memory(len(body), allowance=8 * MiB, per_byte=40):
                        reply = run(request(session, "PUT", base + path, body, HS_TOKEN))
                    assert reply.status in (200, 400, 404, 413), (reply.status, reply.body[:300])
                    if reply.status == 400:
                        answer = reply.json()
                        assert answer["errcode"] in {"M_BAD_JSON", "M_NOT_JSON", "M_INVALID_PARAM"}
                        assert answer["error"]
                    if reply.status == 200:
                        _acked_events_are_storable(body)
                    tally.count(str(reply.status))

                example()

            await run_examples(check)
            valid = json.dumps({"events": [_event(1)]}).encode()
            reply = await request(session, "PUT", base + "after", valid, HS_TOKEN)
            assert reply.status == 200  # still serving
        await _handled(app)
        ledger = app.retention.ledger
        if ledger is not None:  # everything acked was recorded, nothing is stuck
            await asyncio.wait_for(ledger.flush(), timeout=30)
    assert errors.messages() == []


# -- what this fuzzing found, pinned ---------------------------------------------------


async def test_nul_in_txn_id_is_a_400_not_a_503(app: SanteGuard, tally: Tally) -> None:
    """PostgreSQL refused the insert: a 503 the homeserver retried for ever."""
    base = f"{app.config.appservice.address}/_matrix/app/v1/transactions/"
    async with aiohttp.ClientSession() as session:
        for txn in ("a%00b", "%00"):
            reply = await request(session, "PUT", base + txn, b'{"events": []}', HS_TOKEN)
            assert reply.status == 400, (txn, reply.body)
            assert reply.json()["errcode"] == "M_INVALID_PARAM"
            tally.count("400")
    assert await app.db.fetchval("SELECT COUNT(*) FROM txn") == 0


async def test_odd_timestamp_does_not_block_the_ledger(app: SanteGuard, tally: Tally) -> None:
    """An ``origin_server_ts`` past BIGINT made every ledger write fail, for ever."""
    base = f"{app.config.appservice.address}/_matrix/app/v1/transactions/"
    events = [{**_event(1), "origin_server_ts": 2**70}, {**_event(2), "origin_server_ts": -1}]
    with ErrorLog("santeguard.retention.ledger") as errors:
        async with aiohttp.ClientSession() as session:
            body = json.dumps({"events": [*events, _event(3)]}).encode()
            reply = await request(session, "PUT", base + "ts", body, HS_TOKEN)
        assert reply.status == 200
        await _handled(app)
        assert app.retention.ledger is not None
        await asyncio.wait_for(app.retention.ledger.flush(), timeout=30)
    rows = await app.db.fetchval("SELECT COUNT(*) FROM event_ledger")
    assert rows == 3 and errors.messages() == []
    tally.count("200")


def test_receipts_with_unstorable_ids_are_skipped(tally: Tally) -> None:
    good = {"m.read": {"@a:x": {"ts": 1}}}
    data = {
        "ephemeral": [
            {"type": "m.receipt", "room_id": "!r\x00", "content": {"$e": good}},
            {"type": "m.receipt", "room_id": "!r\ud800", "content": {"$e": good}},
            {"type": "m.receipt", "room_id": "!r", "content": {"$e\x00": good}},
            {"type": "m.receipt", "room_id": "!r", "content": {"$e": {"m.read": {"@\x00": {}}}}},
            {"type": "m.receipt", "room_id": "!ok", "content": {"$e": good}},
        ]
    }
    assert [ev["room_id"] for ev in receipt_events(data)] == ["!ok"]
    tally.count("checked")
