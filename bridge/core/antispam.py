"""The synchronous gate's contract with the HTTP layer: callbacks, payloads, decisions, the port.

Synapse calls these (synapse-http-antispam and SantéGuard's room module) *before* an
invite, join, room creation or message takes effect, and refuses the action on any
non-2xx answer (the module is configured fail-closed).

Nothing here allows by default:

- the gate decides only the callbacks in ``DECIDED_CALLBACKS``, and only on a payload
  that has the fields it reads, with their JSON types (``payload_problem``): a payload
  without them is a 400, never a decision made on empty strings;
- every other callback the module can send is answered by ``NOT_DECIDED`` (a refusal or
  a 404, both of which make Synapse refuse the action); unknown names are a 404.

Pure: no I/O, table-tested in tests/spine/test_antispam_payload_table.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

__all__ = [
    "DECIDED_CALLBACKS",
    "GATE_CALLBACKS",
    "NOT_DECIDED",
    "GateDecision",
    "GatePort",
    "NotDecided",
    "PayloadProblem",
    "payload_problem",
]

#: Callbacks the gate decides (``GatePort.decide``), each on a validated payload.
DECIDED_CALLBACKS = frozenset(
    {
        "user_may_invite",
        "user_may_join_room",
        "user_may_create_room",
        "check_event_for_spam",
        "federated_user_may_invite",
        "check_login_for_spam",
        "user_may_send_3pid_invite",
    }
)


@dataclass(frozen=True, slots=True)
class NotDecided:
    """The answer to a callback the gate does not decide. Never "allow"."""

    status: int  # 403: refused; 404: not a callback this gate answers
    errcode: str
    message: str


def _not_answered(callback: str) -> NotDecided:
    return NotDecided(
        404,
        "M_UNRECOGNIZED",
        f"{callback} is not decided by the SantéGuard gate; remove it from enabled_callbacks",
    )


#: Callbacks synapse-http-antispam 0.5.1 can send that the gate does not decide.
NOT_DECIDED: Mapping[str, NotDecided] = MappingProxyType(
    {
        # No rule for aliases: an alias admits nobody. Not answered (Synapse refuses).
        "user_may_create_room_alias": _not_answered("user_may_create_room_alias"),
        # No rule for the room directory: listing a room admits nobody. Not answered.
        "user_may_publish_room": _not_answered("user_may_publish_room"),
        # No rule for user search; a non-2xx hides the user from every search. Not answered.
        "check_username_for_spam": _not_answered("check_username_for_spam"),
        # Synapse 1.163 refuses it at start-up; a join it would cover goes through
        # user_may_join_room. Not answered.
        "accept_make_join": _not_answered("accept_make_join"),
    }
)

#: Every callback name the gate knows: decided, or answered without a decision.
GATE_CALLBACKS = DECIDED_CALLBACKS | frozenset(NOT_DECIDED)


# -- payloads ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PayloadProblem:
    """What is wrong with a callback's payload: a message naming the field, a metric label."""

    message: str
    reason: str  # short, bounded label for metrics: missing_field, bad_field, not_utf8


def encodable(value: str) -> bool:
    """A lone surrogate (``"\\ud800"`` is valid JSON) cannot be stored, logged or sent."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# A check returns what is wrong with a value ("must be …"), or None.
_Check = Callable[[Any], str | None]
_NOT_UTF8 = "is not valid UTF-8"
# No database text column takes a NUL: a refusal's audit entry holding one failed its
# insert (a 500, and the other entries of that group commit with it).
_HAS_NUL = "must not contain NUL"


def _text_problem(value: str) -> str | None:
    if not encodable(value):
        return _NOT_UTF8
    return _HAS_NUL if "\x00" in value else None


def _string(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    return _text_problem(value)


def _prefixed(sigil: str, what: str, *, colon: bool) -> _Check:
    def check(value: Any) -> str | None:
        if (problem := _string(value)) is not None:
            return problem
        if not value.startswith(sigil) or (colon and ":" not in value[2:]):
            return f"must be {what}"
        return None

    return check


_user_id = _prefixed("@", "a Matrix user ID (@user:server)", colon=True)
# Room IDs of room version 12 have no server part: only the sigil is required.
_room_id = _prefixed("!", "a room ID (!room)", colon=False)
_event_id = _prefixed("$", "an event ID ($event)", colon=False)


def _any_string(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    return _text_problem(value)


def _optional_string(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return "must be a string or null"
    return _text_problem(value)


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _object(value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be an object"


def _array(value: Any) -> str | None:
    return None if isinstance(value, list) else "must be an array"


def _equals(expected: str) -> _Check:
    def check(value: Any) -> str | None:
        return None if value == expected else f'must be "{expected}"'

    return check


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    check: _Check
    required: bool = True
    inner: tuple[_Field, ...] = ()  # for objects: their own fields, checked after ``check``
    # A required field may still be absent from an object for which this holds.
    absent_ok: Callable[[dict[str, Any]], bool] | None = None


def _is_create(event: dict[str, Any]) -> bool:
    # From room version 12 the create event has no room_id: the room ID is derived from
    # the create event's ID. Synapse checks it when it arrives over federation.
    return event.get("type") == "m.room.create"


# Fields of an event as synapse-http-antispam 0.5.1 sends it (format_event_for_client_v2
# plus event_id): what every event has, and what the gate reads.
_EVENT = (
    _Field("type", _string),
    _Field("event_id", _event_id),
    _Field("room_id", _room_id, absent_ok=_is_create),
    _Field("sender", _user_id),
    _Field("state_key", _any_string, False),
    _Field("content", _object),
)
_INVITE_EVENT = (
    _Field("type", _equals("m.room.member")),
    *(f for f in _EVENT if f.name not in ("type", "state_key", "content")),
    _Field("state_key", _user_id),
    _Field("content", _object, inner=(_Field("membership", _equals("invite")),)),
)

# Required: what the gate reads and what makes the request what it claims to be (an
# invite has an inviter). Optional: what the module also sends, checked when present;
# logins stay lenient beyond the user ID, since the gate only listens to them.
_PAYLOADS: Mapping[str, tuple[_Field, ...]] = MappingProxyType(
    {
        "user_may_invite": (
            _Field("inviter", _user_id),
            _Field("invitee", _user_id),
            _Field("room_id", _room_id),
        ),
        "user_may_join_room": (
            _Field("user", _user_id),
            _Field("room", _room_id),
            _Field("is_invited", _boolean, False),
        ),
        # synapse-http-antispam sends the user ID alone; SantéGuard's room module adds
        # the /createRoom body as room_config.
        "user_may_create_room": (
            _Field("user_id", _user_id),
            _Field("room_config", _object, False),
        ),
        "check_event_for_spam": (_Field("event", _object, inner=_EVENT),),
        "federated_user_may_invite": (_Field("event", _object, inner=_INVITE_EVENT),),
        # Refused by the gate: an e-mail address or phone number is not an account it
        # can verify (who accepts the invite is unknown until then).
        "user_may_send_3pid_invite": (
            _Field("inviter", _user_id),
            _Field("medium", _string),
            _Field("address", _string),
            _Field("room_id", _room_id),
        ),
        "check_login_for_spam": (
            _Field("user_id", _user_id),
            _Field("device_id", _optional_string, False),
            _Field("initial_display_name", _optional_string, False),
            _Field("request_info", _array, False),
            _Field("auth_provider_id", _optional_string, False),
        ),
    }
)
assert frozenset(_PAYLOADS) == DECIDED_CALLBACKS  # the two tables are kept in step


def _problem(
    fields: tuple[_Field, ...], data: dict[str, Any], prefix: str
) -> PayloadProblem | None:
    for f in fields:
        path = f"{prefix}{f.name}"
        if f.name not in data:
            if f.required and not (f.absent_ok is not None and f.absent_ok(data)):
                return PayloadProblem(f"{path} is missing", "missing_field")
            continue
        value = data[f.name]
        if (wrong := f.check(value)) is not None:
            return PayloadProblem(
                f"{path} {wrong}", "not_utf8" if wrong == _NOT_UTF8 else "bad_field"
            )
        if f.inner and (inner := _problem(f.inner, value, f"{path}.")) is not None:
            return inner
    return None


def payload_problem(callback: str, payload: Any) -> PayloadProblem | None:
    """What is wrong with a decided callback's payload, naming the field; None if valid.

    Fields the gate does not know are ignored (a later module version may add some).
    Values are never echoed: they may be personal data.
    """
    fields = _PAYLOADS.get(callback)
    if fields is None:
        raise ValueError(f"{callback!r} is not a callback the gate decides")
    if not isinstance(payload, dict):
        return PayloadProblem("body must be a JSON object", "not_object")
    return _problem(fields, payload, "")


# -- decisions -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GateDecision:
    allow: bool
    errcode: str = "M_FORBIDDEN"
    reason: str = ""

    @classmethod
    def allowed(cls) -> GateDecision:
        return cls(True)

    @classmethod
    def refused(cls, reason: str, errcode: str = "M_FORBIDDEN") -> GateDecision:
        return cls(False, errcode, reason)


class GatePort(Protocol):
    async def decide(self, callback: str, payload: dict[str, Any]) -> GateDecision: ...
