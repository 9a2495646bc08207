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


@pytest.mark.parametrize(
    ("user", "ver", "room", "net", "allow", "reason", "params"),
    [
        pytest.param(BOT, None, DEFAULT_ROOM, NET, True, "", None, id="exempt-user-by-name"),
        pytest.param(BRIDGED, None, DEFAULT_ROOM, NET, True, "", None, id="exempt-user-by-pattern"),
        pytest.param(
            f"x{BRIDGED}",
            None,
            DEFAULT_ROOM,
            NET,
            False,
            "not_verified",
            {"user": f"x{BRIDGED}"},
            id="pattern-needs-fullmatch-not-search",
        ),
        pytest.param(
            BOT,
            None,
            DEFAULT_ROOM,
            NET_NO_EXEMPTIONS,
            False,
            "not_verified",
            {"user": BOT},
            id="no-exemptions-configured",
        ),
        pytest.param(
            MALLORY, None, OPEN_ROOM, NET, True, "", None, id="room-unprotected-anyone-ok"
        ),
        pytest.param(
            MALLORY,
            None,
            DEFAULT_ROOM,
            NET_UNPROTECTED,
            True,
            "",
            None,
            id="network-unprotected-by-default-ok",
        ),
        pytest.param(
            ALICE,
            None,
            PROTECTED_ROOM,
            NET_UNPROTECTED,
            False,
            "not_verified",
            {"user": ALICE},
            id="room-protected-on-unprotected-network-enforced",
        ),
        pytest.param(
            MALLORY,
            VALID,
            DEFAULT_ROOM,
            NET,
            False,
            "server_not_allowed",
            {"user": MALLORY, "server": FOREIGN},
            id="server-not-allowed-even-if-verified",
        ),
        pytest.param(
            "@nocolon",
            VALID,
            DEFAULT_ROOM,
            NET,
            False,
            "server_not_allowed",
            {"user": "@nocolon", "server": "@nocolon"},
            id="user-id-without-server-not-allowed",
        ),
        pytest.param(
            ALICE,
            None,
            DEFAULT_ROOM,
            NET,
            False,
            "not_verified",
            {"user": ALICE},
            id="home-server-no-verification",
        ),
        pytest.param(
            BOB,
            None,
            DEFAULT_ROOM,
            NET,
            False,
            "not_verified",
            {"user": BOB},
            id="partner-server-passes-server-check-no-verification",
        ),
        pytest.param(
            ALICE,
            EXPIRED,
            DEFAULT_ROOM,
            NET,
            False,
            "verification_expired",
            {"user": ALICE, "date": NOW.date().isoformat()},
            id="expired-at-valid-until-exclusive",
        ),
        pytest.param(
            ALICE,
            EXPIRED_LONG_AGO,
            DEFAULT_ROOM,
            NET,
            False,
            "verification_expired",
            {"user": ALICE, "date": "2024-04-01"},
            id="expired-long-ago-date-param",
        ),
        pytest.param(
            ALICE,
            NOT_YET_VALID,
            DEFAULT_ROOM,
            NET,
            False,
            "verification_expired",
            {"user": ALICE, "date": VALID_UNTIL.date().isoformat()},
            id="checked-after-now-not-valid-yet",
        ),
        pytest.param(ALICE, VALID, DEFAULT_ROOM, NET, True, "", None, id="valid-no-restriction"),
        pytest.param(BOB, VALID, DEFAULT_ROOM, NET, True, "", None, id="valid-on-partner-server"),
        pytest.param(
            ALICE, VALID, DOCTORS_ROOM, NET, True, "", None, id="profession-in-restriction"
        ),
        pytest.param(
            ALICE,
            NURSE,
            CARE_ROOM,
            NET,
            False,
            "profession_not_allowed",
            {"user": ALICE, "allowed": "Médecin, Pharmacien", "profession": "Infirmier"},
            id="profession-not-in-restriction-labels-sorted",
        ),
        pytest.param(
            ALICE,
            NO_PROFESSION,
            DOCTORS_ROOM,
            NET,
            False,
            "profession_not_allowed",
            {"user": ALICE, "allowed": "Médecin", "profession": "?"},
            id="no-profession-code-refused-as-question-mark",
        ),
        pytest.param(
            ALICE,
            VALID,
            ODD_CODE_ROOM,
            NET,
            False,
            "profession_not_allowed",
            {"user": ALICE, "allowed": "zz", "profession": "Médecin"},
            id="unknown-room-code-shown-as-is",
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


@pytest.mark.parametrize(
    ("user", "ver", "config", "net", "by_default", "allow", "reason"),
    [
        # Who may create at all.
        pytest.param(BOT, None, CLEAR, NET, False, True, "", id="exempt-by-name-skips-all"),
        pytest.param(BRIDGED, None, CLEAR, NET, False, True, "", id="exempt-by-pattern-skips-all"),
        pytest.param(
            MALLORY,
            None,
            CLEAR,
            NET_UNPROTECTED,
            False,
            True,
            "",
            id="network-not-protecting-by-default-skips-all",
        ),
        pytest.param(
            ADMIN, None, CLEAR, NET, False, True, "", id="admin-without-verification-admin-room"
        ),
        pytest.param(
            ADMIN,
            EXPIRED,
            ENCRYPTED,
            NET,
            False,
            False,
            "creator_not_verified",
            id="admin-with-expired-verification-checked-as-creator",
        ),
        pytest.param(
            ADMIN,
            VALID,
            CLEAR,
            NET,
            False,
            False,
            "room_not_encrypted",
            id="admin-with-valid-verification-must-encrypt",
        ),
        pytest.param(
            ALICE,
            None,
            ENCRYPTED,
            NET,
            False,
            False,
            "creator_not_verified",
            id="creator-unverified",
        ),
        pytest.param(
            MALLORY,
            VALID,
            ENCRYPTED,
            NET,
            False,
            False,
            "creator_not_verified",
            id="creator-on-foreign-server",
        ),
        pytest.param(
            ALICE,
            EXPIRED,
            ENCRYPTED,
            NET,
            False,
            False,
            "creator_not_verified",
            id="creator-verification-expired",
        ),
        pytest.param(ALICE, NURSE, ENCRYPTED, NET, False, True, "", id="any-profession-may-create"),
        # Verified creator: when encryption is not checked.
        pytest.param(ALICE, VALID, None, NET, False, True, "", id="room-config-none-creator-only"),
        pytest.param(
            ALICE, VALID, CLEAR, NET_CLEAR_OK, False, True, "", id="require-encryption-false"
        ),
        pytest.param(
            ALICE, VALID, CLEAR, NET, True, True, "", id="encrypted-by-default-on-homeserver"
        ),
        pytest.param(
            ALICE,
            VALID,
            body(creation_content={"type": "m.space"}),
            NET,
            False,
            True,
            "",
            id="unencrypted-room-type-space",
        ),
        pytest.param(
            ALICE,
            VALID,
            body(creation_content={"type": "org.example.board"}),
            NET,
            False,
            False,
            "room_not_encrypted",
            id="other-room-type-must-encrypt",
        ),
        pytest.param(
            ALICE,
            VALID,
            body(creation_content={"m.federate": False}),
            NET,
            False,
            False,
            "room_not_encrypted",
            id="creation-content-without-type-must-encrypt",
        ),
        pytest.param(
            ALICE,
            VALID,
            body(creation_content="m.space"),
            NET,
            False,
            False,
            "room_not_encrypted",
            id="creation-content-not-object-ignored",
        ),
        # Verified creator: the megolm initial_state check.
        pytest.param(
            ALICE, VALID, CLEAR, NET, False, False, "room_not_encrypted", id="no-initial-state"
        ),
        pytest.param(
            ALICE,
            VALID,
            body([]),
            NET,
            False,
            False,
            "room_not_encrypted",
            id="initial-state-empty-list",
        ),
        pytest.param(
            ALICE,
            VALID,
            body({"m.room.encryption": ENCRYPTION_EVENT}),
            NET,
            False,
            False,
            "room_not_encrypted",
            id="initial-state-not-a-list",
        ),
        pytest.param(
            ALICE,
            VALID,
            body(["m.room.encryption"]),
            NET,
            False,
            False,
            "room_not_encrypted",
            id="initial-state-entry-not-object",
        ),
        pytest.param(
            ALICE,
            VALID,
            body([{**ENCRYPTION_EVENT, "type": "m.room.name"}]),
            NET,
            False,
            False,
            "room_not_encrypted",
            id="entry-wrong-event-type",
        ),
        pytest.param(
            ALICE,
            VALID,
            body([{**ENCRYPTION_EVENT, "state_key": "x"}]),
            NET,
            False,
            False,
            "room_not_encrypted",
            id="entry-non-empty-state-key",
        ),
        pytest.param(
            ALICE,
            VALID,
            body([{k: v for k, v in ENCRYPTION_EVENT.items() if k != "state_key"}]),
            NET,
            False,
            True,
            "",
            id="entry-state-key-absent-means-empty",
        ),
        pytest.param(
            ALICE,
            VALID,
            body([{**ENCRYPTION_EVENT, "content": MEGOLM}]),
            NET,
            False,
            False,
            "room_not_encrypted",
            id="entry-content-not-object",
        ),
        pytest.param(
            ALICE,
            VALID,
            body([{"type": "m.room.encryption", "state_key": ""}]),
            NET,
            False,
            False,
            "room_not_encrypted",
            id="entry-content-missing",
        ),
        pytest.param(
            ALICE,
            VALID,
            body([{**ENCRYPTION_EVENT, "content": {}}]),
            NET,
            False,
            False,
            "room_not_encrypted",
            id="entry-algorithm-missing",
        ),
        pytest.param(
            ALICE,
            VALID,
            body([{**ENCRYPTION_EVENT, "content": {"algorithm": "m.olm.v1.curve25519-aes-sha2"}}]),
            NET,
            False,
            False,
            "room_not_encrypted",
            id="entry-wrong-algorithm",
        ),
        pytest.param(ALICE, VALID, ENCRYPTED, NET, False, True, "", id="megolm-initial-state"),
        pytest.param(
            ALICE,
            VALID,
            body(
                [
                    {"type": "m.room.name", "state_key": "", "content": {"name": "Staff"}},
                    "junk",
                    ENCRYPTION_EVENT,
                ]
            ),
            NET,
            False,
            True,
            "",
            id="megolm-among-other-entries",
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


@pytest.mark.parametrize(
    ("ev", "room", "net", "allow", "reason"),
    [
        pytest.param(event(), DEFAULT_ROOM, NET_CLEAR_OK, True, "", id="require-encryption-false"),
        pytest.param(event(), OPEN_ROOM, NET, True, "", id="room-unprotected"),
        pytest.param(event(), DEFAULT_ROOM, NET_UNPROTECTED, True, "", id="network-unprotected"),
        pytest.param(
            event(),
            PROTECTED_ROOM,
            NET_UNPROTECTED,
            False,
            "message_not_encrypted",
            id="room-protected-on-unprotected-network",
        ),
        pytest.param(event(sender=BOT), DEFAULT_ROOM, NET, True, "", id="exempt-sender-by-name"),
        pytest.param(
            event(sender=BRIDGED), DEFAULT_ROOM, NET, True, "", id="exempt-sender-by-pattern"
        ),
        pytest.param(
            event(sender=None),
            DEFAULT_ROOM,
            NET,
            False,
            "message_not_encrypted",
            id="sender-missing-not-exempt",
        ),
        *(
            pytest.param(
                event(t), DEFAULT_ROOM, NET, False, "message_not_encrypted", id=f"clear-{t}"
            )
            for t in sorted(CONTENT_TYPES)
        ),
        pytest.param(
            event(state_key=""),
            DEFAULT_ROOM,
            NET,
            True,
            "",
            id="content-type-with-state-key-is-state",
        ),
        pytest.param(event("m.room.encrypted"), DEFAULT_ROOM, NET, True, "", id="encrypted-event"),
        pytest.param(
            event("m.room.topic", state_key=""), DEFAULT_ROOM, NET, True, "", id="state-event"
        ),
        pytest.param(
            event("org.example.custom"), DEFAULT_ROOM, NET, True, "", id="non-content-type"
        ),
        pytest.param(event(None), DEFAULT_ROOM, NET, True, "", id="type-missing"),
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
