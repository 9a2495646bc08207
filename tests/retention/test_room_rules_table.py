"""Pure rules of the room side of retention, table-tested: the gate's state rule, a
room's policy state and its repair, inactive-room steps, human durations."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from types import MappingProxyType

import pytest

from bridge.app.retention import retention_rules
from bridge.gate.policy import NetworkPolicy, RoomPolicy, may_create_room, may_send
from bridge.retention.config import RetentionConfig
from bridge.retention.inactive import Step, closing_at, next_step
from bridge.retention.policy import RetentionBounds, human_duration
from bridge.retention.service import repaired_content, room_retention

D = 86_400_000
BOUNDS = RetentionBounds(default_max_ms=180 * D, min_ms=D, max_ms=365 * D)
NOW = datetime(2026, 11, 30, tzinfo=UTC)


class _Verified:
    profession_code = "10"
    valid_until = datetime(2030, 1, 1, tzinfo=UTC)

    def is_valid_at(self, when: datetime) -> bool:
        return True


def _network(protect: bool = True) -> NetworkPolicy:
    return NetworkPolicy(
        home_server="hs.test",
        allowed_servers=frozenset(),
        exempt_users=frozenset(),
        exempt_user_pattern=re.compile("@sg(_.+)?:hs.test"),
        protect_by_default=protect,
        state_rules=retention_rules(RetentionConfig()),
    )


def _state(content: object, sender: str = "@doc:hs.test", key: str = "") -> dict[str, object]:
    return {
        "type": "m.room.retention",
        "state_key": key,
        "sender": sender,
        "room_id": "!r:hs.test",
        "content": content,
    }


GATE = [
    ("in bounds", _state({"max_lifetime": 90 * D}), True, True, ""),
    ("above", _state({"max_lifetime": 400 * D}), True, False, "retention_out_of_bounds"),
    ("below", _state({"max_lifetime": 1000}), True, False, "retention_out_of_bounds"),
    ("no max", _state({}), True, False, "retention_missing_max"),
    ("string", _state({"max_lifetime": "90d"}), True, False, "retention_malformed"),
    ("not an object", _state("90d"), True, False, "retention_missing_max"),
    (
        "enforcer too",
        _state({"max_lifetime": 400 * D}, "@sg_control:hs.test"),
        True,
        False,
        "retention_out_of_bounds",
    ),
    ("unprotected room", _state({"max_lifetime": 400 * D}), False, True, ""),
    ("other state key", _state({"max_lifetime": 400 * D}, key="x"), True, True, ""),
]


@pytest.mark.parametrize(("name", "event", "protect", "allow", "reason"), GATE)
def test_gate_state_rule(
    name: str, event: dict[str, object], protect: bool, allow: bool, reason: str
) -> None:
    decision = may_send(event, _Verified(), RoomPolicy(), _network(protect), NOW)
    assert decision.allow is allow, name
    assert decision.reason == (reason or decision.reason)


def test_disabled_retention_has_no_rule() -> None:
    assert retention_rules(RetentionConfig(enabled=False)) == MappingProxyType({})


ENC = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


@pytest.mark.parametrize(
    ("initial", "allow"),
    [
        ([ENC], True),
        ([ENC, _state({"max_lifetime": 30 * D})], True),
        ([ENC, _state({"max_lifetime": 3 * 365 * D})], False),
        ([ENC, _state({"max_lifetime": 5})], False),
        ([ENC, "junk"], True),
    ],
)
def test_room_creation_checks_initial_retention(initial: list[object], allow: bool) -> None:
    decision = may_create_room(
        "@doc:hs.test", _Verified(), {"initial_state": initial}, _network(), NOW
    )
    assert decision.allow is allow


ROOM_STATES = [
    (None, "missing", 180 * D, {"max_lifetime": 180 * D}),
    ({"max_lifetime": 30 * D}, "ok", 30 * D, None),
    ({"max_lifetime": 500 * D}, "out_of_bounds", 365 * D, {"max_lifetime": 365 * D}),
    ({"max_lifetime": 1000}, "out_of_bounds", D, {"max_lifetime": D}),
    ({"max_lifetime": True}, "malformed", 180 * D, {"max_lifetime": 180 * D}),
    ({"min_lifetime": D}, "missing", 180 * D, {"max_lifetime": 180 * D}),
]


@pytest.mark.parametrize(("content", "state", "effective", "repair"), ROOM_STATES)
def test_room_state_and_repair(
    content: dict[str, object] | None, state: str, effective: int, repair: object
) -> None:
    current = room_retention(content, BOUNDS)
    assert (current.state, current.effective_ms) == (state, effective)
    if repair is not None:
        assert repaired_content(current, BOUNDS) == repair


AFTER, NOTICE = 180 * D, 14 * D
STEPS = [
    ("fresh", 0, None, 10 * D, Step.NONE),
    ("just before the notice window", 0, None, AFTER - NOTICE - 1, Step.NONE),
    ("notice window", 0, None, AFTER - NOTICE, Step.ANNOUNCE),
    ("found long idle: announce first", 0, None, 400 * D, Step.ANNOUNCE),
    ("announced, waiting", 0, AFTER - NOTICE, AFTER - 1, Step.NONE),
    ("announced, due", 0, AFTER - NOTICE, AFTER, Step.CLOSE),
    ("long idle announced late: full notice", 0, 400 * D, 400 * D + NOTICE - 1, Step.NONE),
    ("long idle announced late: due", 0, 400 * D, 400 * D + NOTICE, Step.CLOSE),
    ("activity after the announcement", AFTER - 5, AFTER - NOTICE, AFTER, Step.CANCEL),
]


@pytest.mark.parametrize(("name", "last", "announced", "now", "step"), STEPS)
def test_inactive_steps(name: str, last: int, announced: int | None, now: int, step: Step) -> None:
    assert next_step(last, announced, now, after_ms=AFTER, notice_ms=NOTICE) is step, name


def test_closing_date_never_sooner_than_the_notice() -> None:
    assert closing_at(0, AFTER - NOTICE, after_ms=AFTER, notice_ms=NOTICE) == AFTER
    assert closing_at(0, 400 * D, after_ms=AFTER, notice_ms=NOTICE) == 400 * D + NOTICE


@pytest.mark.parametrize(
    ("ms", "expected"),
    [
        (365 * D, (1, "year")),
        (180 * D, (180, "day")),
        (D + 3_600_000, (25, "hour")),
        (90_000, (90, "second")),
        (120_000, (2, "minute")),
        (730 * D, (2, "year")),
        (400 * D + 1, (400, "day")),
        (1, (1, "second")),
    ],
)
def test_human_duration(ms: int, expected: tuple[int, str]) -> None:
    assert human_duration(ms) == expected
