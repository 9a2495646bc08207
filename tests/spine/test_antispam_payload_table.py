"""The gate's payload contract (``bridge.core.antispam``), as a table.

The valid payloads are not written by hand: they are what synapse-http-antispam 0.5.1 and
SantéGuard's room module actually send, captured by calling them with a recording HTTP
client. Every malformed payload names its field; nothing here reaches the gate.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest

from bridge.core.antispam import (
    DECIDED_CALLBACKS,
    GATE_CALLBACKS,
    NOT_DECIDED,
    PayloadProblem,
    payload_problem,
)

BOT = "@santeguard:sante.example"


class _Recorder:
    def __init__(self) -> None:
        self.sent: dict[str, dict[str, Any]] = {}

    async def post_json_get_json(self, url: str, data: Any, headers: Any) -> dict[str, Any]:
        # Synapse sends JSON: a round trip turns tuples into lists, as on the wire.
        self.sent[url.rsplit("/", 1)[1]] = json.loads(json.dumps(data))
        return {}


class _Api:
    def __init__(self) -> None:
        self.http_client = _Recorder()

    def register_spam_checker_callbacks(self, **callbacks: Any) -> None:
        pass

    def register_third_party_rules_callbacks(self, **callbacks: Any) -> None:
        pass


def _event(fields: dict[str, Any], version: str = "10") -> Any:
    from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
    from synapse.events import make_event_from_dict

    base = {
        "room_id": "!room:sante.example",
        "sender": "@alice:sante.example",
        "origin_server_ts": 1_700_000_000_000,
        "auth_events": [],
        "prev_events": [],
        "depth": 3,
        "hashes": {"sha256": "x"},
        "signatures": {},
    }
    event = {**base, **fields}
    if fields.get("type") == "m.room.create" and version == "12":
        del event["room_id"]  # from room version 12, derived from the create event's ID
    return make_event_from_dict(event, KNOWN_ROOM_VERSIONS[version])


def _captured() -> dict[str, dict[str, Any]]:
    """One real payload per decided callback (plus the room module's creation)."""
    from synapse_http_antispam import HTTPAntispam

    from bridge.gate.synapse_module import SanteGuardRoomRules

    api = _Api()
    module = HTTPAntispam(
        {"base_url": "http://sg/p", "enabled_callbacks": ["user_may_invite"]}, api
    )

    async def call_all() -> dict[str, dict[str, Any]]:
        await module.user_may_invite("@alice:sante.example", "@bob:sante.example", "!r:s")
        await module.user_may_join_room("@bob:sante.example", "!r:sante.example", True)
        await module.user_may_create_room("@alice:sante.example")
        await module.check_event_for_spam(
            _event({"type": "m.room.message", "content": {"msgtype": "m.text", "body": "x"}})
        )
        await module.federated_user_may_invite(
            _event(
                {
                    "type": "m.room.member",
                    "state_key": "@carol:other.example",
                    "content": {"membership": "invite"},
                }
            )
        )
        await module.check_login_for_spam(
            "@alice:sante.example", "DEVICE", None, [("Mozilla", "10.0.0.1")], "oidc-psc"
        )
        await module.user_may_send_3pid_invite(
            "@alice:sante.example", "email", "x@y.example", "!r:sante.example"
        )
        sent = dict(api.http_client.sent)
        # Synapse checks a room version 12 create event (no room_id) when it arrives over
        # federation, e.g. on joining a remote room.
        create = {"type": "m.room.create", "state_key": "", "content": {"room_version": "12"}}
        await module.check_event_for_spam(_event(create, "12"))
        sent["check_event_for_spam (v12 create)"] = api.http_client.sent["check_event_for_spam"]
        room_api = _Api()
        # Both spellings of the enforcement user's key: whichever the module reads.
        room_config = {"base_url": "http://sg/p", "authorization": "t"}
        room_config |= {"enforcer_user_id": BOT, "bot_user_id": BOT}
        rules = SanteGuardRoomRules(room_config, room_api)
        await rules.user_may_create_room(
            "@alice:sante.example", {"preset": "private_chat", "initial_state": []}
        )
        sent["user_may_create_room (room module)"] = room_api.http_client.sent[
            "user_may_create_room"
        ]
        return sent

    return asyncio.run(call_all())


CAPTURED = _captured()


def test_every_decided_callback_was_captured() -> None:
    assert {k.split(" ")[0] for k in CAPTURED} == DECIDED_CALLBACKS


@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_what_the_modules_send_is_valid(name: str) -> None:
    assert payload_problem(name.split(" ")[0], CAPTURED[name]) is None


def test_only_a_create_event_may_lack_its_room_id() -> None:
    create = CAPTURED["check_event_for_spam (v12 create)"]
    assert "room_id" not in create["event"]
    message = _with("check_event_for_spam (v12 create)", "event.type", "m.room.message")
    assert payload_problem("check_event_for_spam", message) == PayloadProblem(
        "event.room_id is missing", "missing_field"
    )


def test_every_callback_the_module_can_send_has_an_answer() -> None:
    """No callback of synapse-http-antispam 0.5.1 falls through to a default."""
    from synapse_http_antispam import HTTPAntispam

    public = {n for n in dir(HTTPAntispam) if not n.startswith("_")}
    assert public <= GATE_CALLBACKS
    assert not DECIDED_CALLBACKS & set(NOT_DECIDED)
    for name, answer in NOT_DECIDED.items():
        assert answer.status in (403, 404), name  # never allowed
        assert answer.errcode in ("M_FORBIDDEN", "M_UNRECOGNIZED")
    # An invitation by e-mail or phone is decided by the gate: always refused, with a
    # translated reason (tests/spine/test_http_bad_input.py).
    assert "user_may_send_3pid_invite" in DECIDED_CALLBACKS


def _with(callback: str, path: str, value: Any) -> dict[str, Any]:
    """The captured payload of ``callback`` with ``path`` (dotted) set, or removed if ...."""
    payload = copy.deepcopy(CAPTURED[callback])
    *parents, last = path.split(".")
    target = payload
    for p in parents:
        target = target[p]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return payload


GONE = ...
# (callback, dotted field, value or GONE, expected message, metric reason)
INVALID: list[tuple[str, str, Any, str, str]] = [
    ("user_may_invite", "inviter", GONE, "inviter is missing", "missing_field"),
    ("user_may_invite", "room_id", GONE, "room_id is missing", "missing_field"),
    ("user_may_invite", "invitee", 7, "invitee must be a non-empty string", "bad_field"),
    ("user_may_invite", "invitee", "", "invitee must be a non-empty string", "bad_field"),
    (
        "user_may_invite",
        "invitee",
        "bob",
        "invitee must be a Matrix user ID (@user:server)",
        "bad_field",
    ),
    ("user_may_invite", "invitee", "@bob", "invitee must be a Matrix user ID", "bad_field"),
    ("user_may_invite", "room_id", "#alias:x", "room_id must be a room ID (!room)", "bad_field"),
    ("user_may_invite", "inviter", "@a\ud800:x", "inviter is not valid UTF-8", "not_utf8"),
    ("user_may_join_room", "user", GONE, "user is missing", "missing_field"),
    ("user_may_join_room", "room", ["!r:x"], "room must be a non-empty string", "bad_field"),
    ("user_may_join_room", "is_invited", "yes", "is_invited must be true or false", "bad_field"),
    ("user_may_create_room", "user_id", GONE, "user_id is missing", "missing_field"),
    ("user_may_create_room", "room_config", None, "room_config must be an object", "bad_field"),
    ("user_may_create_room", "room_config", [], "room_config must be an object", "bad_field"),
    ("check_event_for_spam", "event", GONE, "event is missing", "missing_field"),
    ("check_event_for_spam", "event", "x", "event must be an object", "bad_field"),
    ("check_event_for_spam", "event", [], "event must be an object", "bad_field"),
    ("check_event_for_spam", "event.type", GONE, "event.type is missing", "missing_field"),
    ("check_event_for_spam", "event.type", None, "event.type must be a non-empty", "bad_field"),
    ("check_event_for_spam", "event.room_id", GONE, "event.room_id is missing", "missing_field"),
    ("check_event_for_spam", "event.sender", 1, "event.sender must be a non-empty", "bad_field"),
    (
        "check_event_for_spam",
        "event.event_id",
        "e",
        "event.event_id must be an event ID",
        "bad_field",
    ),
    ("check_event_for_spam", "event.content", GONE, "event.content is missing", "missing_field"),
    ("check_event_for_spam", "event.content", "hi", "event.content must be an object", "bad_field"),
    ("check_event_for_spam", "event.state_key", 0, "event.state_key must be a string", "bad_field"),
    ("check_event_for_spam", "event.type", "m.\udc80", "event.type is not valid UTF-8", "not_utf8"),
    ("federated_user_may_invite", "event", 3, "event must be an object", "bad_field"),
    (
        "federated_user_may_invite",
        "event.type",
        "m.room.message",
        'event.type must be "m.room.member"',
        "bad_field",
    ),
    (
        "federated_user_may_invite",
        "event.state_key",
        GONE,
        "event.state_key is missing",
        "missing_field",
    ),
    (
        "federated_user_may_invite",
        "event.content.membership",
        "join",
        'event.content.membership must be "invite"',
        "bad_field",
    ),
    ("check_login_for_spam", "user_id", GONE, "user_id is missing", "missing_field"),
    ("check_login_for_spam", "device_id", 5, "device_id must be a string or null", "bad_field"),
    ("check_login_for_spam", "request_info", {}, "request_info must be an array", "bad_field"),
    (
        "check_login_for_spam",
        "auth_provider_id",
        ["oidc"],
        "auth_provider_id must be a string or null",
        "bad_field",
    ),
]


@pytest.mark.parametrize(("callback", "path", "value", "message", "reason"), INVALID)
def test_malformed_payloads_name_the_field(
    callback: str, path: str, value: Any, message: str, reason: str
) -> None:
    problem = payload_problem(callback, _with(callback, path, value))
    assert problem is not None
    assert problem.message.startswith(message), problem.message
    assert problem.reason == reason


@pytest.mark.parametrize("callback", sorted(DECIDED_CALLBACKS))
@pytest.mark.parametrize("body", [{}, [], "x", None, 3])
def test_empty_or_non_object_bodies(callback: str, body: Any) -> None:
    problem = payload_problem(callback, body)
    assert problem is not None
    if isinstance(body, dict):
        assert problem.reason == "missing_field" and problem.message.endswith("is missing")
    else:
        assert problem == PayloadProblem("body must be a JSON object", "not_object")


def test_measured_allows_are_now_refused() -> None:
    """Three of the malformed requests the gate used to allow (issue 8)."""
    assert payload_problem("check_event_for_spam", {}) is not None
    no_type = _with("check_event_for_spam", "event.type", GONE)
    assert payload_problem("check_event_for_spam", no_type) is not None
    only_the_bot = {"invitee": BOT}
    assert payload_problem("user_may_invite", only_the_bot) == PayloadProblem(
        "inviter is missing", "missing_field"
    )


def test_optional_fields_and_unknown_fields() -> None:
    # synapse-http-antispam sends user_may_create_room without room_config; a later
    # version may add fields: both are fine.
    assert payload_problem("user_may_create_room", {"user_id": "@a:x"}) is None
    assert payload_problem("user_may_join_room", {"user": "@a:x", "room": "!r"}) is None
    extra = {**CAPTURED["user_may_invite"], "new_field": {"x": 1}}
    assert payload_problem("user_may_invite", extra) is None
    # Room version 12 room IDs have no server part.
    assert payload_problem("user_may_join_room", {"user": "@a:x", "room": "!abc"}) is None
    # A state event's state_key may be empty.
    state = _with("check_event_for_spam", "event.state_key", "")
    assert payload_problem("check_event_for_spam", state) is None


def test_messages_never_echo_values() -> None:
    secret = "@patient-name\ud800:x"
    problem = payload_problem("user_may_invite", _with("user_may_invite", "invitee", secret))
    assert problem is not None and "patient" not in problem.message


@pytest.mark.parametrize("callback", ["ping", "user_may_publish_room", "nope"])
def test_only_decided_callbacks_have_a_payload_contract(callback: str) -> None:
    with pytest.raises(ValueError, match="not a callback the gate decides"):
        payload_problem(callback, {})
