"""The network's retention rules, pure: durations, bounds, and a room's ``m.room.retention``.

Synapse does not bound-check ``m.room.retention``: it accepts any value and only clamps
it when purging, while clients hide events using the raw value. So a room's policy is
judged here, before it reaches the room (the synchronous gate), and the effective
lifetime used by the audit is the clamped one, as Synapse's purge job computes it.
``min_lifetime`` is ignored by Synapse; it is accepted when sane and otherwise refused,
so that a room never advertises a promise nobody keeps.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.core.decision import Decision

RETENTION_EVENT = "m.room.retention"
MS_PER_DAY = 86_400_000
_UNITS_MS = {
    "s": 1000,  # seconds and minutes: for tests and trials; the bounds refuse them in use
    "min": 60_000,
    "h": 3_600_000,
    "d": MS_PER_DAY,
    "j": MS_PER_DAY,  # jours
    "w": 7 * MS_PER_DAY,
    "sem": 7 * MS_PER_DAY,  # semaines
    "mo": 30 * MS_PER_DAY,
    "mois": 30 * MS_PER_DAY,
    "y": 365 * MS_PER_DAY,
    "a": 365 * MS_PER_DAY,  # ans
}
# Whole words too, as people type them in a command (French and English).
_UNITS_MS.update(
    {
        "heure": _UNITS_MS["h"],
        "heures": _UNITS_MS["h"],
        "hour": _UNITS_MS["h"],
        "hours": _UNITS_MS["h"],
        "jour": MS_PER_DAY,
        "jours": MS_PER_DAY,
        "day": MS_PER_DAY,
        "days": MS_PER_DAY,
        "semaine": 7 * MS_PER_DAY,
        "semaines": 7 * MS_PER_DAY,
        "week": 7 * MS_PER_DAY,
        "weeks": 7 * MS_PER_DAY,
        "month": 30 * MS_PER_DAY,
        "months": 30 * MS_PER_DAY,
        "an": 365 * MS_PER_DAY,
        "ans": 365 * MS_PER_DAY,
        "year": 365 * MS_PER_DAY,
        "years": 365 * MS_PER_DAY,
    }
)
_DURATION = re.compile(r"\s*(\d{1,6})\s*([a-z]{1,9})\s*")
_MAX_MS = 100 * 365 * MS_PER_DAY  # anything longer is a typo, not a policy


class DurationError(ValueError):
    """A duration that cannot be read; ``reason`` is a text-catalog key suffix."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_duration(text: str) -> int:
    """``"90d"``, ``"6mo"``, ``"1y"``, ``"12 h"`` (French units too: j, sem, mois, a) → ms.

    Seconds and minutes (``s``, ``min``) exist for trial networks and tests."""
    match = _DURATION.fullmatch(text.lower())
    if match is None:
        raise DurationError("duration_unreadable")
    number, unit = int(match.group(1)), match.group(2)
    if unit not in _UNITS_MS:
        raise DurationError("duration_unknown_unit")
    if number == 0:
        raise DurationError("duration_zero")
    ms = number * _UNITS_MS[unit]
    if ms > _MAX_MS:
        raise DurationError("duration_too_long")
    return ms


def days(ms: int) -> float:
    # A JSON integer may have thousands of digits; true division would overflow.
    if abs(ms) < 2**1000:
        return ms / MS_PER_DAY
    return math.inf if ms > 0 else -math.inf


@dataclass(frozen=True, slots=True)
class RetentionBounds:
    """The network's declared retention: a default and the bounds every room stays within."""

    default_max_ms: int
    min_ms: int
    max_ms: int

    def __post_init__(self) -> None:
        if not 0 < self.min_ms <= self.default_max_ms <= self.max_ms:
            raise ValueError("retention bounds must satisfy 0 < min <= default <= max")

    def within(self, max_lifetime: int) -> bool:
        return self.min_ms <= max_lifetime <= self.max_ms

    def clamp(self, max_lifetime: int) -> int:
        return min(max(max_lifetime, self.min_ms), self.max_ms)

    def default_content(self) -> dict[str, int]:
        """The ``m.room.retention`` content a room gets when it has none."""
        return {"max_lifetime": self.default_max_ms}


def _int(value: Any) -> int | None:
    """A JSON integer (not a bool, not a float: Synapse rejects both when purging)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_content(content: Mapping[str, Any] | None, bounds: RetentionBounds) -> Decision:
    """Whether a room may carry this ``m.room.retention`` content."""
    if not content:
        return Decision.no("retention_missing_max")
    raw_max = content.get("max_lifetime")
    if raw_max is None:
        return Decision.no("retention_missing_max")
    max_lifetime = _int(raw_max)
    if max_lifetime is None or max_lifetime <= 0:
        return Decision.no("retention_malformed")
    if not bounds.within(max_lifetime):
        return Decision.no(
            "retention_out_of_bounds",
            value=f"{days(max_lifetime):g}",
            low=f"{days(bounds.min_ms):g}",
            high=f"{days(bounds.max_ms):g}",
        )
    if "min_lifetime" in content:
        min_lifetime = _int(content["min_lifetime"])
        if min_lifetime is None or not 0 <= min_lifetime <= max_lifetime:
            return Decision.no("retention_malformed")
    return Decision.ok()


def effective_max_ms(content: Mapping[str, Any] | None, bounds: RetentionBounds) -> int:
    """How long a room's events live, as Synapse's purge job computes it: the room's
    ``max_lifetime`` clamped to the bounds, or the network default when it has none."""
    value = _int((content or {}).get("max_lifetime"))
    if value is None or value <= 0:
        return bounds.default_max_ms
    return bounds.clamp(value)


_HUMAN_UNITS = (
    ("year", 365 * MS_PER_DAY),
    ("day", MS_PER_DAY),
    ("hour", 3_600_000),
    ("minute", 60_000),
    ("second", 1000),
)


def human_duration(ms: int) -> tuple[int, str]:
    """``(number, unit)`` for telling people a lifetime: the largest unit that divides
    it exactly (a year only when it is a whole number of years), days for the rest."""
    for unit, size in _HUMAN_UNITS:
        if ms >= size and ms % size == 0:
            return ms // size, unit
    if ms >= MS_PER_DAY:
        return round(ms / MS_PER_DAY), "day"
    return max(1, round(ms / 1000)), "second"
