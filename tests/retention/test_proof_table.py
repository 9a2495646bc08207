"""The purge-proof verdicts, table-tested (bridge/retention/proof.py)."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.retention.policy import MS_PER_DAY, RetentionBounds
from bridge.retention.proof import (
    MAX_EVIDENCE,
    MediaOutcome,
    ProbeKind,
    RoomEvidence,
    RoomPolicy,
    RoomVerdict,
    cutoff_ms,
    deepest_level,
    room_policy,
    room_verdict,
    run_verdict,
)

D = MS_PER_DAY
BOUNDS = RetentionBounds(default_max_ms=180 * D, min_ms=30 * D, max_ms=365 * D)
OK = RoomPolicy("ok", 90 * D)

POLICIES: list[tuple[Any, str, int]] = [
    ({"max_lifetime": 90 * D}, "ok", 90 * D),
    ({"max_lifetime": 90 * D, "min_lifetime": 30 * D}, "ok", 90 * D),
    (None, "missing", 180 * D),
    ({}, "missing", 180 * D),
    ({"min_lifetime": D}, "missing", 180 * D),
    ({"max_lifetime": "90d"}, "malformed", 180 * D),
    ({"max_lifetime": True}, "malformed", 180 * D),
    ({"max_lifetime": -5}, "malformed", 180 * D),
    ({"max_lifetime": 90 * D, "min_lifetime": 91 * D}, "malformed", 90 * D),
    # Out of bounds: judged, and clamped as Synapse's purge job would.
    ({"max_lifetime": D}, "out_of_bounds", 30 * D),
    ({"max_lifetime": 3650 * D}, "out_of_bounds", 365 * D),
]


@pytest.mark.parametrize(("content", "state", "lifetime"), POLICIES)
def test_room_policy(content: Any, state: str, lifetime: int) -> None:
    assert room_policy(content, BOUNDS) == RoomPolicy(state, lifetime)  # type: ignore[arg-type]


def test_cutoff_adds_the_purge_interval_and_margin() -> None:
    assert cutoff_ms(1_000 * D, OK, D, 60_000) == 1_000 * D - 90 * D - D - 60_000


P: ProbeKind = "present"
G: ProbeKind = "purged"
F: ProbeKind = "forbidden"
E: ProbeKind = "error"

VERDICTS: list[tuple[str, str, RoomEvidence, dict[str, Any]]] = [
    # (case, admin, evidence, expected fields)
    (
        "all gone",
        "ok",
        RoomEvidence(probes=[("$a", G), ("$b", G)], scanned_present=[], boundary={"$x"}),
        {"verdict": "proven", "checked": 2, "purged": 2, "present": 0, "reason": None},
    ),
    (
        "boundary event left, as Synapse documents",
        "ok",
        RoomEvidence(probes=[("$a", G), ("$b", P)], scanned_present=["$b"], boundary={"$b"}),
        {"verdict": "proven", "checked": 2, "purged": 1, "excepted": ("$b",), "reason": None},
    ),
    (
        "one expired event left besides the boundary",
        "ok",
        RoomEvidence(probes=[("$a", P), ("$b", P)], scanned_present=["$a", "$b"], boundary={"$b"}),
        {"verdict": "violations", "present": 1, "evidence": ("$a",), "excepted": ("$b",)},
    ),
    (
        "only the scan sees it (ledger missed it)",
        "ok",
        RoomEvidence(probes=[("$a", G)], scanned_present=["$m", "$z"], boundary={"$z"}),
        {"verdict": "violations", "present": 1, "evidence": ("$m",), "checked": 1},
    ),
    (
        "evidence outranks a failed probe",
        "ok",
        RoomEvidence(probes=[("$a", P), ("$b", E)], scanned_present=[], boundary={"$q"}),
        {"verdict": "violations", "present": 1, "evidence": ("$a",)},
    ),
    (
        "a failed probe is not a proof",
        "ok",
        RoomEvidence(probes=[("$a", G), ("$b", E)], scanned_present=[], boundary={"$q"}),
        {"verdict": "cannot_prove", "reason": "probe_failed", "purged": 1},
    ),
    (
        "rights lost during the run",
        "ok",
        RoomEvidence(probes=[("$a", F)], scanned_present=[], boundary={"$q"}),
        {"verdict": "cannot_prove", "reason": "not_admin"},
    ),
    (
        "scan failed",
        "ok",
        RoomEvidence(probes=[("$a", G)], scanned_present=None, boundary={"$q"}),
        {"verdict": "cannot_prove", "reason": "scan_failed"},
    ),
    (
        "scan cut short",
        "ok",
        RoomEvidence(probes=[], scanned_present=[], scan_complete=False, boundary={"$q"}),
        {"verdict": "cannot_prove", "reason": "scan_incomplete"},
    ),
    (
        "nothing expired yet: proven, and says it is vacuous",
        "ok",
        RoomEvidence(),
        {"verdict": "proven", "checked": 0, "reason": "nothing_expired"},
    ),
    (
        "no ledger entry old enough but the scan saw old history, all gone except boundary",
        "ok",
        RoomEvidence(probes=[], scanned_present=[], boundary={"$state"}, saw_expired=True),
        {"verdict": "proven", "checked": 0, "reason": None},
    ),
    (
        "not admin: never proven, even with nothing to check",
        "not_admin",
        RoomEvidence(),
        {"verdict": "cannot_prove", "reason": "not_admin", "checked": 0},
    ),
    (
        "homeserver unreachable",
        "unreachable",
        RoomEvidence(probes=[("$a", G)]),
        {"verdict": "cannot_prove", "reason": "unreachable", "checked": 0},
    ),
]


@pytest.mark.parametrize(
    ("case", "admin", "evidence", "expected"), VERDICTS, ids=[v[0] for v in VERDICTS]
)
def test_room_verdict(
    case: str, admin: Any, evidence: RoomEvidence, expected: dict[str, Any]
) -> None:
    verdict = room_verdict(admin, OK, evidence)
    for key, value in expected.items():
        assert getattr(verdict, key) == value, (case, key)
    assert verdict.policy_state == "ok" and verdict.max_lifetime_ms == 90 * D


@pytest.mark.parametrize(
    ("events", "kept"),
    [
        ([], set()),
        ([("$a", 5), ("$b", 6), ("$c", 7)], {"$c"}),  # a line: the last one
        ([("$a", 5), ("$b", 7), ("$c", 7)], {"$b", "$c"}),  # a fork at the top: both
        ([("$a", 5), ("$s", 9)], {"$s"}),  # a state event on top: no message excused
        ([("$a", None), ("$b", 3)], {"$b"}),  # unknown depth: never excused
        ([("$a", None)], set()),
    ],
)
def test_deepest_level(events: list[tuple[str, int | None]], kept: set[str]) -> None:
    assert deepest_level(events) == kept


def test_fork_at_the_boundary_is_excused_but_not_below() -> None:
    boundary = deepest_level([("$m1", 10), ("$m2", 11), ("$notice", 11)])
    verdict = room_verdict(
        "ok", OK, RoomEvidence(scanned_present=["$m1", "$m2", "$notice"], boundary=boundary)
    )
    assert (verdict.verdict, verdict.evidence) == ("violations", ("$m1",))
    assert set(verdict.excepted) == {"$m2", "$notice"}


def test_policy_problem_is_carried_whatever_the_verdict() -> None:
    missing = room_policy(None, BOUNDS)
    assert room_verdict("ok", missing, RoomEvidence()).policy_state == "missing"
    assert room_verdict("not_admin", missing, RoomEvidence()).policy_state == "missing"
    bad = room_verdict("ok", missing, RoomEvidence(probes=[("$a", P)], boundary={"$b"}))
    assert (bad.verdict, bad.policy_state) == ("violations", "missing")


def test_evidence_is_capped_but_counted() -> None:
    ids = [f"${i}" for i in range(50)]
    verdict = room_verdict("ok", OK, RoomEvidence(scanned_present=ids, boundary={"$49"}))
    assert verdict.present == 49
    assert verdict.evidence == tuple(ids[:MAX_EVIDENCE])


def _room(verdict: str, policy: str = "ok") -> RoomVerdict:
    return RoomVerdict(verdict, policy, 1)  # type: ignore[arg-type]


RUNS: list[tuple[str, str, list[RoomVerdict], MediaOutcome | None, str, str | None]] = [
    ("all proven", "ok", [_room("proven"), _room("proven")], MediaOutcome(), "proven", None),
    ("no rooms", "ok", [], MediaOutcome(), "proven", None),
    (
        "one violation",
        "ok",
        [_room("proven"), _room("violations")],
        MediaOutcome(),
        "violations",
        None,
    ),
    (
        "violation beats unproven",
        "ok",
        [_room("cannot_prove"), _room("violations")],
        MediaOutcome(),
        "violations",
        None,
    ),
    (
        "one unproven room",
        "ok",
        [_room("proven"), _room("cannot_prove")],
        MediaOutcome(),
        "cannot_prove",
        "rooms_unchecked",
    ),
    (
        "media left behind",
        "ok",
        [_room("proven")],
        MediaOutcome(deleted=1, left=1),
        "violations",
        None,
    ),
    (
        "media pass failed",
        "ok",
        [_room("proven")],
        MediaOutcome(error="TransientError"),
        "cannot_prove",
        "media_unchecked",
    ),
    ("not admin", "not_admin", [_room("cannot_prove")], None, "cannot_prove", "not_admin"),
    ("not admin, no rooms: still not OK", "not_admin", [], None, "cannot_prove", "not_admin"),
    ("unreachable", "unreachable", [], None, "cannot_prove", "unreachable"),
]


@pytest.mark.parametrize(("case", "admin", "rooms", "media", "verdict", "reason"), RUNS)
def test_run_verdict(
    case: str,
    admin: Any,
    rooms: list[RoomVerdict],
    media: MediaOutcome | None,
    verdict: str,
    reason: str | None,
) -> None:
    run = run_verdict(admin, rooms, media)
    assert (run.verdict, run.reason) == (verdict, reason), case
    assert run.rooms == len(rooms)


def test_run_counts_policy_problems_by_kind() -> None:
    rooms = [_room("proven", "missing"), _room("proven", "missing"), _room("proven", "malformed")]
    run = run_verdict("ok", rooms, MediaOutcome())
    assert run.policy_problems == {"missing": 2, "malformed": 1}
    assert run.verdict == "proven"  # a missing policy is reported, not a purge failure
