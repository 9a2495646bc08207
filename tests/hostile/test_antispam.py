"""Hostile gate callback bodies: POST {antispam.path}/{callback} at volume.

tests/test_bad_input_property.py checks that a payload the gate cannot read is never
allowed, with the gate open (rooms unprotected). Here the network protects rooms and the
sender is a verified practitioner, so valid-looking payloads reach the policy itself:
``room_config`` with wrong-typed ``initial_state`` or ``creation_content``, state events
whose content holds integers of thousands of digits, giant strings, lone surrogates,
NUL. The contract: 200, 403 with a reason, or a precise 400/404; never a 5xx nor an
unhandled error; memory bounded by the body's size.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.app import SanteGuard
from bridge.core.antispam import DECIDED_CALLBACKS, payload_problem
from bridge.devtools.people import practitioner
from bridge.identity.model import Verification
from tests.helpers import GATE_TOKEN, make_config
from tests.hostile.budget import MiB, Tally, budget
from tests.hostile.serve import ErrorLog, request, run_examples

DOC = "@doc:santeguard.test"
ROOM = "!r:santeguard.test"
NASTY = st.sampled_from(["\ud800", "\x00", "a\x00b", "\u202e", "", " ", "é" * 5000])
HUGE_INT = st.integers(300, 4000).map(lambda n: int("9" * n))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    HUGE_INT,
    st.floats(allow_nan=False),
    st.text(max_size=20),
    NASTY,
)
TREES = st.recursive(
    SCALARS,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=12,
)
STATE_TYPES = st.sampled_from(
    ["m.room.retention", "m.room.encryption", "m.room.message", "x.custom", "m.room.name"]
)
RETENTION = st.fixed_dictionaries(
    {}, optional={"max_lifetime": SCALARS, "min_lifetime": SCALARS, "x": TREES}
)


def state_event(content: Any, type_: Any) -> dict[str, Any]:
    return {"type": type_, "state_key": "", "content": content}


INITIAL_STATE = st.one_of(
    SCALARS,
    TREES,
    st.lists(
        st.one_of(
            st.builds(state_event, st.one_of(RETENTION, TREES), st.one_of(STATE_TYPES, SCALARS)),
            st.just(state_event({"algorithm": "m.megolm.v1.aes-sha2"}, "m.room.encryption")),
            SCALARS,
        ),
        max_size=4,
    ),
)
ROOM_CONFIG = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "initial_state": INITIAL_STATE,
            "creation_content": st.one_of(
                st.fixed_dictionaries({"type": st.one_of(SCALARS, TREES)}), SCALARS
            ),
            "preset": SCALARS,
        },
    ),
    TREES,
)
EVENT = st.builds(
    lambda type_, content, extra: {
        "type": type_,
        "event_id": "$e",
        "room_id": ROOM,
        "sender": DOC,
        "content": content,
        **extra,
    },
    st.one_of(STATE_TYPES, st.text(min_size=1, max_size=10)),
    st.one_of(RETENTION, TREES.filter(lambda t: isinstance(t, dict)), st.just({"body": "x"})),
    st.fixed_dictionaries(
        {},
        optional={
            "state_key": st.one_of(st.just(""), SCALARS),
            "unsigned": TREES,
            "origin_server_ts": SCALARS,
        },
    ),
)
BODIES: dict[str, st.SearchStrategy[Any]] = {
    "user_may_create_room": st.fixed_dictionaries(
        {"user_id": st.just(DOC)}, optional={"room_config": ROOM_CONFIG}
    ),
    "check_event_for_spam": st.fixed_dictionaries({"event": EVENT}),
    "user_may_join_room": st.fixed_dictionaries(
        {"user": st.one_of(st.just(DOC), NASTY.map(lambda s: f"@{s}:x")), "room": st.just(ROOM)},
        optional={"is_invited": SCALARS},
    ),
    "user_may_invite": st.fixed_dictionaries(
        {
            "inviter": st.just(DOC),
            "invitee": st.just(DOC),
            "room_id": st.one_of(st.just(ROOM), NASTY.map(lambda s: f"!{s}")),
        },
    ),
    "check_login_for_spam": st.fixed_dictionaries(
        {"user_id": st.just(DOC)},
        optional={
            "auth_provider_id": st.one_of(st.just("oidc-psc"), SCALARS),
            "request_info": st.one_of(TREES, SCALARS),
            "device_id": SCALARS,
        },
    ),
}


def _encode(body: Any) -> bytes:
    return json.dumps(body).encode("utf-8", "surrogatepass")


@pytest.fixture
async def app(db_uri: str) -> AsyncIterator[SanteGuard]:
    instance = SanteGuard(
        make_config(
            db_uri, gate={"protect_by_default": True}, appservice={"max_body_bytes": 2 * MiB}
        )
    )
    await instance.start()
    now = datetime.now(UTC)
    who = practitioner(7, last="HOSTILE", first="Test")
    await instance.verifications.bind(
        DOC, Verification.of(who, "manual", now, timedelta(days=1)), "test"
    )
    yield instance
    await instance.stop()


def test_payload_check_is_total(tally: Tally) -> None:
    """The pure payload check returns a problem or None for anything, never raises."""

    @budget(300)
    @given(callback=st.sampled_from(sorted(DECIDED_CALLBACKS)), data=st.data())
    def example(callback: str, data: st.DataObject) -> None:
        body = data.draw(BODIES.get(callback, TREES) | TREES)
        problem = payload_problem(callback, body)
        tally.count("refused" if problem else "valid")

    example()


async def test_gate_answers_decided_or_precise_4xx(app: SanteGuard, tally: Tally) -> None:
    base = f"{app.config.appservice.address}{app.config.antispam.path}/"
    with ErrorLog("santeguard.gate") as errors:
        async with aiohttp.ClientSession() as session:

            def check(run: Any) -> None:
                @budget(150)
                @given(callback=st.sampled_from(sorted(BODIES)), data=st.data())
                def example(callback: str, data: st.DataObject) -> None:
                    raw = _encode(data.draw(BODIES[callback]))
                    with tally.memory(len(raw), allowance=8 * MiB, per_byte=40):
                        reply = run(
                            request(session, "POST", base + quote(callback), raw, GATE_TOKEN)
                        )
                    assert reply.status in (200, 400, 403, 413), (reply.status, reply.body[:300])
                    if reply.status != 200:
                        answer = reply.json()
                        assert answer["errcode"] and answer["error"], answer
                    if reply.status == 200:  # allowed only on a payload the gate can read
                        assert payload_problem(callback, json.loads(raw)) is None
                    tally.count(f"{callback}:{reply.status}")

                example()

            await run_examples(check)
    assert errors.messages() == []


# -- what this fuzzing found, pinned ---------------------------------------------------


async def test_found_payloads_are_decided_not_500(app: SanteGuard, tally: Tally) -> None:
    """Each of these was a 500 (TypeError, OverflowError, a NUL the audit insert refused)."""
    base = f"{app.config.appservice.address}{app.config.antispam.path}/"
    retention = {"type": "m.room.retention", "state_key": "", "content": {"max_lifetime": 10**400}}
    cases: list[tuple[str, Any, set[int]]] = [
        ("user_may_create_room", {"user_id": DOC, "room_config": {"initial_state": 5}}, {403}),
        ("user_may_create_room", {"user_id": DOC, "room_config": {"initial_state": 1.5}}, {403}),
        (
            "user_may_create_room",
            {"user_id": DOC, "room_config": {"creation_content": {"type": []}}},
            {403},
        ),
        (
            "user_may_create_room",
            {"user_id": DOC, "room_config": {"initial_state": [retention]}},
            {403},
        ),
        (
            "check_event_for_spam",
            {"event": {**retention, "event_id": "$e", "room_id": ROOM, "sender": DOC}},
            {403},
        ),
        ("user_may_join_room", {"user": "@x\x00:y", "room": ROOM}, {400}),
        ("user_may_invite", {"inviter": DOC, "invitee": DOC, "room_id": "!r\x00"}, {400}),
    ]
    with ErrorLog() as errors:
        async with aiohttp.ClientSession() as session:
            for callback, body, expected in cases:
                reply = await request(session, "POST", base + callback, _encode(body), GATE_TOKEN)
                assert reply.status in expected, (callback, reply.status, reply.body[:200])
                tally.count(str(reply.status))
    assert errors.messages() == []
