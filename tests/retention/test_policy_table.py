"""Retention rules, table-tested: durations, bounds, and a room's m.room.retention."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.retention.policy import (
    MS_PER_DAY,
    DurationError,
    RetentionBounds,
    check_content,
    effective_max_ms,
    parse_duration,
)

D = MS_PER_DAY
BOUNDS = RetentionBounds(default_max_ms=180 * D, min_ms=30 * D, max_ms=365 * D)

DURATIONS = [
    ("90d", 90 * D),
    ("90 j", 90 * D),
    ("12h", D // 2),
    ("2w", 14 * D),
    ("3 sem", 21 * D),
    ("6mo", 180 * D),
    ("6 mois", 180 * D),
    ("1y", 365 * D),
    ("2a", 730 * D),
    (" 30D ", 30 * D),
    ("90 jours", 90 * D),
    ("90 days", 90 * D),
    ("2 semaines", 14 * D),
    ("1 an", 365 * D),
    ("3 months", 90 * D),
    ("30s", 30_000),
    ("5 min", 300_000),
]


@pytest.mark.parametrize(("text", "ms"), DURATIONS)
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


BAD_DURATIONS = [
    ("", "duration_unreadable"),
    ("d90", "duration_unreadable"),
    ("90", "duration_unreadable"),
    ("-5d", "duration_unreadable"),
    ("1.5d", "duration_unreadable"),
    ("90 parsecs", "duration_unknown_unit"),
    ("90x", "duration_unknown_unit"),
    ("0d", "duration_zero"),
    ("101y", "duration_too_long"),
    ("9999999d", "duration_unreadable"),
]


@pytest.mark.parametrize(("text", "reason"), BAD_DURATIONS)
def test_unreadable_durations_say_why(text: str, reason: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("default", "low", "high"),
    [(10, 20, 30), (40, 20, 30), (20, 0, 30), (20, 30, 20)],
)
def test_bounds_must_be_ordered(default: int, low: int, high: int) -> None:
    with pytest.raises(ValueError):
        RetentionBounds(default_max_ms=default, min_ms=low, max_ms=high)


CONTENTS: list[tuple[str, Any, bool, str]] = [
    ("default", {"max_lifetime": 180 * D}, True, ""),
    ("at the lower bound", {"max_lifetime": 30 * D}, True, ""),
    ("at the upper bound", {"max_lifetime": 365 * D}, True, ""),
    ("with a sane min", {"max_lifetime": 90 * D, "min_lifetime": D}, True, ""),
    ("none", None, False, "retention_missing_max"),
    ("empty", {}, False, "retention_missing_max"),
    ("only min", {"min_lifetime": D}, False, "retention_missing_max"),
    ("too short", {"max_lifetime": D}, False, "retention_out_of_bounds"),
    ("too long", {"max_lifetime": 3650 * D}, False, "retention_out_of_bounds"),
    ("a string", {"max_lifetime": "90d"}, False, "retention_malformed"),
    ("a float", {"max_lifetime": 90.0 * D}, False, "retention_malformed"),
    ("a bool", {"max_lifetime": True}, False, "retention_malformed"),
    ("negative", {"max_lifetime": -1}, False, "retention_malformed"),
    ("zero", {"max_lifetime": 0}, False, "retention_malformed"),
    (
        "min above max",
        {"max_lifetime": 90 * D, "min_lifetime": 91 * D},
        False,
        "retention_malformed",
    ),
    (
        "min not an int",
        {"max_lifetime": 90 * D, "min_lifetime": "1d"},
        False,
        "retention_malformed",
    ),
]


@pytest.mark.parametrize(
    ("name", "content", "allow", "reason"), CONTENTS, ids=[c[0] for c in CONTENTS]
)
def test_check_content(name: str, content: Any, allow: bool, reason: str) -> None:
    decision = check_content(content, BOUNDS)
    assert (decision.allow, decision.reason) == (allow, reason)


def test_out_of_bounds_names_the_value_and_the_bounds_in_days() -> None:
    decision = check_content({"max_lifetime": 3650 * D}, BOUNDS)
    assert dict(decision.params) == {"value": "3650", "low": "30", "high": "365"}


EFFECTIVE = [
    (None, 180 * D),
    ({}, 180 * D),
    ({"max_lifetime": "x"}, 180 * D),
    ({"max_lifetime": 90 * D}, 90 * D),
    ({"max_lifetime": D}, 30 * D),  # clamped up, as Synapse's purge job does
    ({"max_lifetime": 3650 * D}, 365 * D),  # clamped down
]


@pytest.mark.parametrize(("content", "ms"), EFFECTIVE)
def test_effective_lifetime_is_synapses(content: Any, ms: int) -> None:
    assert effective_max_ms(content, BOUNDS) == ms


def test_default_content_passes_its_own_check() -> None:
    assert check_content(BOUNDS.default_content(), BOUNDS).allow
