"""Table tests for the pure gate rules (bridge/gate/policy.py): one row per branch.

Every row names the branch it covers in its id. Times are fixed (no wall clock): the
member's verification runs from CHECKED to VALID_UNTIL and the gate decides at NOW.
Refusals are also rendered in both languages from the gate's text catalog, so a reason
with no text, or whose text needs a parameter the decision lacks, fails here rather than
in a room.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.core.decision import Decision
from bridge.gate.policy import (
    CONTENT_TYPES,
    MEGOLM,
    NetworkPolicy,
    RoomPolicy,
    is_admin_room,
    is_protected,
    may_be_member,
    may_create_room,
    message_allowed,
)
from bridge.gate.text import CATALOG
from bridge.identity.model import Verification

HOME = "sante.example"
PARTNER = "partenaire.example"
FOREIGN = "ailleurs.example"

ALICE = f"@alice:{HOME}"  # a verified practitioner (médecin) in most rows
BOB = f"@bob:{PARTNER}"  # on an allowed partner server
MALLORY = f"@mallory:{FOREIGN}"  # on a server outside the network
BOT = f"@santeguard:{HOME}"  # exempt by name
BRIDGED = f"@mss_jdupont:{HOME}"  # exempt by pattern
ADMIN = f"@admin:{HOME}"  # network admin

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
CHECKED = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
VALID_UNTIL = datetime(2025, 6, 1, 9, 30, tzinfo=UTC)


def verification(
    profession_code: str | None = "10",
    checked_at: datetime = CHECKED,
    valid_until: datetime = VALID_UNTIL,
) -> Verification:
    return Verification(
        source="extract",
        idnps="810000000001",
        profession_code=profession_code,
        last_name="Martin",
        first_name="Alice",
        checked_at=checked_at,
        valid_until=valid_until,
    )


VALID = verification()
EXPIRED = verification(valid_until=NOW)  # valid_until is exclusive: expired at NOW
EXPIRED_LONG_AGO = verification(
    checked_at=datetime(2024, 1, 1, tzinfo=UTC), valid_until=datetime(2024, 4, 1, tzinfo=UTC)
)
NOT_YET_VALID = verification(checked_at=NOW + timedelta(seconds=1))
NURSE = verification(profession_code="60")
NO_PROFESSION = verification(profession_code=None)


def network(**overrides: Any) -> NetworkPolicy:
    base: dict[str, Any] = {
        "home_server": HOME,
        "allowed_servers": frozenset({PARTNER}),
        "exempt_users": frozenset({BOT}),
        "exempt_user_pattern": re.compile(rf"@mss_[a-z0-9_]+:{re.escape(HOME)}"),
        "protect_by_default": True,
        "require_encryption": True,
        "unencrypted_room_types": frozenset({"m.space"}),
        "admins": frozenset({ADMIN}),
    }
    base.update(overrides)
    return NetworkPolicy(**base)


NET = network()
NET_UNPROTECTED = network(protect_by_default=False)
NET_CLEAR_OK = network(require_encryption=False)
NET_NO_EXEMPTIONS = network(exempt_users=frozenset(), exempt_user_pattern=None)

DEFAULT_ROOM = RoomPolicy()
PROTECTED_ROOM = RoomPolicy(protected=True)
OPEN_ROOM = RoomPolicy(protected=False)
DOCTORS_ROOM = RoomPolicy(professions=frozenset({"10"}))
CARE_ROOM = RoomPolicy(professions=frozenset({"10", "21"}))
ODD_CODE_ROOM = RoomPolicy(professions=frozenset({"zz"}))


def assert_decision(
    got: Decision, allow: bool, reason: str, params: Mapping[str, str] | None
) -> None:
    assert (got.allow, got.reason) == (allow, reason)
    if allow:
        assert dict(got.params) == {}
        return
    if params is not None:
        assert dict(got.params) == dict(params)
    for lang in ("fr", "en"):
        template = CATALOG[lang][f"gate.reason.{reason}"]
        assert template.format(**got.params)  # every placeholder is supplied


# ---------------------------------------------------------------------------
# is_protected


@pytest.mark.parametrize(
    ("room", "net", "expected"),
    [
        pytest.param(DEFAULT_ROOM, NET, True, id="room-default+network-protects=protected"),
        pytest.param(
            DEFAULT_ROOM, NET_UNPROTECTED, False, id="room-default+network-open=unprotected"
        ),
        pytest.param(PROTECTED_ROOM, NET_UNPROTECTED, True, id="room-true-overrides-network"),
        pytest.param(OPEN_ROOM, NET, False, id="room-false-overrides-network"),
    ],
)
def test_is_protected(room: RoomPolicy, net: NetworkPolicy, expected: bool) -> None:
    assert is_protected(room, net) is expected


# ---------------------------------------------------------------------------
# may_be_member


def member(
    case_id: str,
    user: str,
    ver: Verification | None,
    reason: str = "",
    *,
    room: RoomPolicy = DEFAULT_ROOM,
    net: NetworkPolicy = NET,
    **params: str,
) -> Any:
    """A may_be_member row: allowed without ``reason``; refused with it, the refusal's
    params being ``user`` plus ``params``."""
    expected = {"user": user, **params} if reason else None
    return pytest.param(user, ver, room, net, not reason, reason, expected, id=case_id)


@pytest.mark.parametrize(
    ("user", "ver", "room", "net", "allow", "reason", "params"),
    [
        member("exempt-user-by-name", BOT, None),
        member("exempt-user-by-pattern", BRIDGED, None),
        member("pattern-needs-fullmatch-not-search", f"x{BRIDGED}", None, "not_verified"),
        member("no-exemptions-configured", BOT, None, "not_verified", net=NET_NO_EXEMPTIONS),
        member("room-unprotected-anyone-ok", MALLORY, None, room=OPEN_ROOM),
        member("network-unprotected-by-default-ok", MALLORY, None, net=NET_UNPROTECTED),
        member(
            "room-protected-on-unprotected-network-enforced",
            ALICE,
            None,
            "not_verified",
            room=PROTECTED_ROOM,
            net=NET_UNPROTECTED,
        ),
        member(
            "server-not-allowed-even-if-verified",
            MALLORY,
            VALID,
            "server_not_allowed",
            server=FOREIGN,
        ),
        member(
            "user-id-without-server-not-allowed",
            "@nocolon",
            VALID,
            "server_not_allowed",
            server="@nocolon",
        ),
        member("home-server-no-verification", ALICE, None, "not_verified"),
        member("partner-server-passes-server-check-no-verification", BOB, None, "not_verified"),
        member(
            "expired-at-valid-until-exclusive",
            ALICE,
            EXPIRED,
            "verification_expired",
            date=NOW.date().isoformat(),
        ),
        member(
            "expired-long-ago-date-param",
            ALICE,
            EXPIRED_LONG_AGO,
            "verification_expired",
            date="2024-04-01",
        ),
        member(
            "checked-after-now-not-valid-yet",
            ALICE,
            NOT_YET_VALID,
            "verification_expired",
            date=VALID_UNTIL.date().isoformat(),
        ),
        member("valid-no-restriction", ALICE, VALID),
        member("valid-on-partner-server", BOB, VALID),
        member("profession-in-restriction", ALICE, VALID, room=DOCTORS_ROOM),
        member(
            "profession-not-in-restriction-labels-sorted",
            ALICE,
            NURSE,
            "profession_not_allowed",
            room=CARE_ROOM,
            allowed="Médecin, Pharmacien",
            profession="Infirmier",
        ),
        member(
            "no-profession-code-refused-as-question-mark",
            ALICE,
            NO_PROFESSION,
            "profession_not_allowed",
            room=DOCTORS_ROOM,
            allowed="Médecin",
            profession="?",
        ),
        member(
            "unknown-room-code-shown-as-is",
            ALICE,
            VALID,
            "profession_not_allowed",
            room=ODD_CODE_ROOM,
            allowed="zz",
            profession="Médecin",
        ),
    ],
)
def test_may_be_member(
    user: str,
    ver: Verification | None,
    room: RoomPolicy,
    net: NetworkPolicy,
    allow: bool,
    reason: str,
    params: Mapping[str, str] | None,
) -> None:
    assert_decision(may_be_member(user, ver, room, net, NOW), allow, reason, params)


# ---------------------------------------------------------------------------
# may_create_room

ENCRYPTION_EVENT: dict[str, Any] = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": MEGOLM},
}


def body(initial_state: Any = None, creation_content: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"preset": "private_chat"}
    if initial_state is not None:
        out["initial_state"] = initial_state
    if creation_content is not None:
        out["creation_content"] = creation_content
    return out


ENCRYPTED = body([ENCRYPTION_EVENT])
CLEAR = body()


def creation(
    case_id: str,
    config: Mapping[str, Any] | None,
    reason: str = "",
    *,
    user: str = ALICE,
    ver: Verification | None = VALID,
    net: NetworkPolicy = NET,
    by_default: bool = False,
) -> Any:
    """A may_create_room row (by a verified médecin unless told): allowed without
    ``reason``, refused with it."""
    return pytest.param(user, ver, config, net, by_default, not reason, reason, id=case_id)


def must_encrypt(case_id: str, config: Mapping[str, Any]) -> Any:
    """A verified creator refused because the room would not be encrypted."""
    return creation(case_id, config, "room_not_encrypted")


@pytest.mark.parametrize(
    ("user", "ver", "config", "net", "by_default", "allow", "reason"),
    [
        # Who may create at all.
        creation("exempt-by-name-skips-all", CLEAR, user=BOT, ver=None),
        creation("exempt-by-pattern-skips-all", CLEAR, user=BRIDGED, ver=None),
        creation(
            "network-not-protecting-by-default-skips-all",
            CLEAR,
            user=MALLORY,
            ver=None,
            net=NET_UNPROTECTED,
        ),
        creation("admin-without-verification-admin-room", CLEAR, user=ADMIN, ver=None),
        creation(
            "admin-with-expired-verification-checked-as-creator",
            ENCRYPTED,
            "creator_not_verified",
            user=ADMIN,
            ver=EXPIRED,
        ),
        creation(
            "admin-with-valid-verification-must-encrypt",
            CLEAR,
            "room_not_encrypted",
            user=ADMIN,
        ),
        creation("creator-unverified", ENCRYPTED, "creator_not_verified", ver=None),
        creation("creator-on-foreign-server", ENCRYPTED, "creator_not_verified", user=MALLORY),
        creation("creator-verification-expired", ENCRYPTED, "creator_not_verified", ver=EXPIRED),
        creation("any-profession-may-create", ENCRYPTED, ver=NURSE),
        # Verified creator: when encryption is not checked.
        creation("room-config-none-creator-only", None),
        creation("require-encryption-false", CLEAR, net=NET_CLEAR_OK),
        creation("encrypted-by-default-on-homeserver", CLEAR, by_default=True),
        creation("unencrypted-room-type-space", body(creation_content={"type": "m.space"})),
        must_encrypt(
            "other-room-type-must-encrypt", body(creation_content={"type": "org.example.board"})
        ),
        must_encrypt(
            "creation-content-without-type-must-encrypt",
            body(creation_content={"m.federate": False}),
        ),
        must_encrypt("creation-content-not-object-ignored", body(creation_content="m.space")),
        # Verified creator: the megolm initial_state check.
        must_encrypt("no-initial-state", CLEAR),
        must_encrypt("initial-state-empty-list", body([])),
        must_encrypt("initial-state-not-a-list", body({"m.room.encryption": ENCRYPTION_EVENT})),
        must_encrypt("initial-state-entry-not-object", body(["m.room.encryption"])),
        must_encrypt("entry-wrong-event-type", body([{**ENCRYPTION_EVENT, "type": "m.room.name"}])),
        must_encrypt("entry-non-empty-state-key", body([{**ENCRYPTION_EVENT, "state_key": "x"}])),
        creation(
            "entry-state-key-absent-means-empty",
            body([{k: v for k, v in ENCRYPTION_EVENT.items() if k != "state_key"}]),
        ),
        must_encrypt("entry-content-not-object", body([{**ENCRYPTION_EVENT, "content": MEGOLM}])),
        must_encrypt(
            "entry-content-missing", body([{"type": "m.room.encryption", "state_key": ""}])
        ),
        must_encrypt("entry-algorithm-missing", body([{**ENCRYPTION_EVENT, "content": {}}])),
        must_encrypt(
            "entry-wrong-algorithm",
            body([{**ENCRYPTION_EVENT, "content": {"algorithm": "m.olm.v1.curve25519-aes-sha2"}}]),
        ),
        creation("megolm-initial-state", ENCRYPTED),
        creation(
            "megolm-among-other-entries",
            body(
                [
                    {"type": "m.room.name", "state_key": "", "content": {"name": "Staff"}},
                    "junk",
                    ENCRYPTION_EVENT,
                ]
            ),
        ),
    ],
)
def test_may_create_room(
    user: str,
    ver: Verification | None,
    config: Mapping[str, Any] | None,
    net: NetworkPolicy,
    by_default: bool,
    allow: bool,
    reason: str,
) -> None:
    got = may_create_room(user, ver, config, net, NOW, encrypted_by_default=by_default)
    assert_decision(got, allow, reason, {})


# ---------------------------------------------------------------------------
# message_allowed


def event(etype: str | None = "m.room.message", sender: str | None = ALICE, **extra: Any) -> dict:
    out: dict[str, Any] = {"event_id": "$e", "room_id": "!r:" + HOME, "content": {}, **extra}
    if etype is not None:
        out["type"] = etype
    if sender is not None:
        out["sender"] = sender
    return out


def message(
    case_id: str,
    ev: Mapping[str, Any],
    reason: str = "",
    *,
    room: RoomPolicy = DEFAULT_ROOM,
    net: NetworkPolicy = NET,
) -> Any:
    """A message_allowed row: allowed without ``reason``, refused with it."""
    return pytest.param(ev, room, net, not reason, reason, id=case_id)


@pytest.mark.parametrize(
    ("ev", "room", "net", "allow", "reason"),
    [
        message("require-encryption-false", event(), net=NET_CLEAR_OK),
        message("room-unprotected", event(), room=OPEN_ROOM),
        message("network-unprotected", event(), net=NET_UNPROTECTED),
        message(
            "room-protected-on-unprotected-network",
            event(),
            "message_not_encrypted",
            room=PROTECTED_ROOM,
            net=NET_UNPROTECTED,
        ),
        message("exempt-sender-by-name", event(sender=BOT)),
        message("exempt-sender-by-pattern", event(sender=BRIDGED)),
        message("sender-missing-not-exempt", event(sender=None), "message_not_encrypted"),
        *(message(f"clear-{t}", event(t), "message_not_encrypted") for t in sorted(CONTENT_TYPES)),
        message("content-type-with-state-key-is-state", event(state_key="")),
        message("encrypted-event", event("m.room.encrypted")),
        message("state-event", event("m.room.topic", state_key="")),
        message("non-content-type", event("org.example.custom")),
        message("type-missing", event(None)),
    ],
)
def test_message_allowed(
    ev: Mapping[str, Any], room: RoomPolicy, net: NetworkPolicy, allow: bool, reason: str
) -> None:
    assert_decision(message_allowed(ev, room, net), allow, reason, {})


def test_content_types_table_is_the_one_tested() -> None:
    # The clear-* rows above are generated from CONTENT_TYPES; pin the set itself so a
    # type silently dropped from it (and so let through in clear) fails here.
    assert {
        "m.room.message",
        "m.sticker",
        "m.reaction",
        "m.poll.start",
        "org.matrix.msc3381.poll.start",
        "m.call.invite",
    } <= CONTENT_TYPES


# ---------------------------------------------------------------------------
# is_admin_room


@pytest.mark.parametrize(
    ("create_event", "net", "expected"),
    [
        pytest.param({"type": "m.room.create", "sender": ADMIN}, NET, True, id="create-by-admin"),
        pytest.param(
            {"type": "m.room.create", "sender": ALICE}, NET, False, id="create-by-non-admin"
        ),
        pytest.param(
            {"type": "m.room.create", "sender": ADMIN},
            network(admins=frozenset()),
            False,
            id="no-admins-configured",
        ),
        pytest.param(
            {"type": "m.room.member", "sender": ADMIN}, NET, False, id="not-a-create-event"
        ),
        pytest.param({"sender": ADMIN}, NET, False, id="type-missing"),
        pytest.param({"type": "m.room.create"}, NET, False, id="sender-missing"),
    ],
)
def test_is_admin_room(create_event: Mapping[str, Any], net: NetworkPolicy, expected: bool) -> None:
    assert is_admin_room(create_event, net) is expected
