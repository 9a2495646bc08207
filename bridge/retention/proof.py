"""Whether a room's expired history is proven gone: pure verdicts over gathered evidence.

What Synapse's purge job does (``handlers/pagination.py``
``purge_history_for_rooms_in_range`` and ``storage/databases/main/purge_events.py``,
1.163): every ``interval`` it takes, per room, the last event received at or before
``now - max_lifetime`` (max_lifetime clamped to the server's allowed bounds) and deletes
the non-state events *before* it. So, at any time, these may legitimately remain:

- state events (never purged; the audit only checks non-state events);
- the newest event older than the purge point — "never the room's newest event" in
  Synapse's documentation is the case where nothing newer exists; the same rule keeps the
  last expired event while the newer ones have not expired yet;
- anything that expired less than one purge interval ago.

Precisely, the purge deletes non-state events whose depth is *lower* than the kept
event's, so events at the same depth (concurrent sends, a fork of the room's DAG) stay
with it. The audit's cutoff is ``now - lifetime - purge interval - margin``; the purge
job's last run is unknown (it has no id to poll), so the events allowed to remain are
the expired ones at the deepest level still present (``boundary``, see
:func:`deepest_level`). Everything else older than the cutoff must answer 404 to the
admin ``fetch_event`` and be absent from the admin ``/messages``, or it is a violation,
with its ID as evidence.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bridge.retention.policy import RetentionBounds, check_content, effective_max_ms

PolicyState = Literal["ok", "missing", "out_of_bounds", "malformed", "unknown"]
"""``unknown``: the room's state could not be read (no admin rights and not a member,
or the homeserver failed): its policy is not judged."""
Verdict = Literal["proven", "violations", "cannot_prove"]
AdminState = Literal["ok", "not_admin", "unreachable"]
ProbeKind = Literal["present", "purged", "forbidden", "error"]
MAX_EVIDENCE = 20

_POLICY_OF_REASON: Mapping[str, PolicyState] = {
    "retention_missing_max": "missing",
    "retention_malformed": "malformed",
    "retention_out_of_bounds": "out_of_bounds",
}


@dataclass(frozen=True, slots=True)
class RoomPolicy:
    """A room's ``m.room.retention`` as judged against the network's bounds, and the
    lifetime its events get (Synapse's clamping, or the network default)."""

    state: PolicyState
    max_lifetime_ms: int


def room_policy(content: Mapping[str, Any] | None, bounds: RetentionBounds) -> RoomPolicy:
    decision = check_content(content, bounds)
    state: PolicyState = (
        "ok" if decision.allow else _POLICY_OF_REASON.get(decision.reason or "", "malformed")
    )
    return RoomPolicy(state, effective_max_ms(content, bounds))


def cutoff_ms(now_ms: int, policy: RoomPolicy, purge_interval_ms: int, margin_ms: int) -> int:
    """Events older than this must be gone."""
    return now_ms - policy.max_lifetime_ms - purge_interval_ms - margin_ms


def deepest_level(expired_present: Iterable[tuple[str, int | None]]) -> frozenset[str]:
    """The expired events still present at the greatest depth: what Synapse's purge
    keeps (the event it stops at and any concurrent with it). Events of unknown depth
    are never excused."""
    known = [(e, d) for e, d in expired_present if d is not None]
    if not known:
        return frozenset()
    top = max(d for _, d in known)
    return frozenset(e for e, d in known if d == top)


@dataclass(frozen=True, slots=True)
class RoomEvidence:
    """What the audit gathered for one room.

    ``probes``: the ledger's expired non-state events and what ``fetch_event`` said of
    each. ``scanned_present``: expired non-state events the admin ``/messages`` still
    lists (found by paging the room from its start), None if the scan failed.
    ``scan_complete``: the scan reached events newer than the cutoff (or the room's end).
    ``boundary``: the expired events Synapse may keep (:func:`deepest_level`).
    ``saw_expired``: the scan met events older than the cutoff (state included).
    """

    probes: Sequence[tuple[str, ProbeKind]] = ()
    scanned_present: Sequence[str] | None = ()
    scan_complete: bool = True
    boundary: Collection[str] = ()
    saw_expired: bool = False


@dataclass(frozen=True, slots=True)
class RoomVerdict:
    verdict: Verdict
    policy_state: PolicyState
    max_lifetime_ms: int | None
    checked: int = 0  # ledger events probed
    purged: int = 0  # of which 404
    present: int = 0  # expired events still retrievable (ledger or scan), boundary excepted
    evidence: tuple[str, ...] = ()  # up to MAX_EVIDENCE of them
    reason: str | None = None  # cannot_prove: why; proven: 'nothing_expired' if vacuous
    excepted: tuple[str, ...] = ()  # boundary events still there (Synapse keeps them)

    def row(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "policy_state": self.policy_state,
            "max_lifetime_ms": self.max_lifetime_ms,
            "checked": self.checked,
            "purged": self.purged,
            "present": self.present,
            "evidence": list(self.evidence),
            "reason": self.reason,
        }


def room_verdict(admin: AdminState, policy: RoomPolicy, evidence: RoomEvidence) -> RoomVerdict:
    """The room's verdict. Policy problems are carried whatever the verdict.

    - ``cannot_prove`` (reason ``not_admin`` / ``unreachable``) without admin rights or
      homeserver: nothing was checked, so nothing is claimed.
    - ``violations`` as soon as one expired event (other than the boundary) is still
      retrievable: evidence outranks an incomplete check.
    - ``cannot_prove`` (``probe_failed`` / ``not_admin`` / ``scan_failed`` /
      ``scan_incomplete``) when some check could not be made.
    - ``proven`` otherwise. With nothing expired (no ledger entry and nothing in the
      room older than the cutoff), it is proven vacuously, and says so:
      reason ``nothing_expired``.
    """
    state, lifetime = policy.state, policy.max_lifetime_ms
    if admin != "ok":
        return RoomVerdict("cannot_prove", state, lifetime, reason=admin)
    boundary = frozenset(evidence.boundary)
    present: list[str] = []
    purged = 0
    failed: set[str] = set()
    kept: list[str] = []
    for event_id, kind in evidence.probes:
        if kind == "purged":
            purged += 1
        elif kind == "present":
            (kept if event_id in boundary else present).append(event_id)
        else:
            failed.add("not_admin" if kind == "forbidden" else "probe_failed")
    for event_id in evidence.scanned_present or ():
        if event_id in boundary:
            kept.append(event_id)
        elif event_id not in present:
            present.append(event_id)
    excepted = tuple(dict.fromkeys(kept))
    checked = len(evidence.probes)
    if present:
        return RoomVerdict(
            "violations",
            state,
            lifetime,
            checked=checked,
            purged=purged,
            present=len(present),
            evidence=tuple(present[:MAX_EVIDENCE]),
            excepted=excepted,
        )
    if evidence.scanned_present is None:
        failed.add("scan_failed")
    elif not evidence.scan_complete:
        failed.add("scan_incomplete")
    for reason in ("not_admin", "probe_failed", "scan_failed", "scan_incomplete"):
        if reason in failed:
            return RoomVerdict(
                "cannot_prove",
                state,
                lifetime,
                checked=checked,
                purged=purged,
                reason=reason,
                excepted=excepted,
            )
    vacuous = not evidence.probes and not excepted and not evidence.saw_expired
    return RoomVerdict(
        "proven",
        state,
        lifetime,
        checked=checked,
        purged=purged,
        reason="nothing_expired" if vacuous else None,
        excepted=excepted,
    )


@dataclass(frozen=True, slots=True)
class MediaOutcome:
    deleted: int = 0
    left: int = 0  # past their lifetime, delete failed
    skipped_avatars: int = 0
    error: str | None = None  # the media pass could not run (reason)


@dataclass(frozen=True, slots=True)
class RunVerdict:
    verdict: Verdict
    rooms: int
    proven: int
    violations: int
    cannot_prove: int
    policy_problems: dict[str, int] = field(default_factory=dict)
    reason: str | None = None


def run_verdict(
    admin: AdminState, rooms: Iterable[RoomVerdict], media: MediaOutcome | None
) -> RunVerdict:
    """The run's verdict: ``violations`` if any room (or media) failed retention, else
    ``cannot_prove`` if anything could not be checked (no admin rights: always), else
    ``proven``. Policy problems are counted beside it, by kind."""
    rooms = list(rooms)
    counts = {
        v: sum(1 for r in rooms if r.verdict == v) for v in ("proven", "violations", "cannot_prove")
    }
    problems: dict[str, int] = {}
    for r in rooms:
        if r.policy_state != "ok":
            problems[r.policy_state] = problems.get(r.policy_state, 0) + 1
    reason: str | None = None
    if counts["violations"] or (media is not None and media.left):
        verdict: Verdict = "violations"
    elif admin != "ok":
        verdict, reason = "cannot_prove", admin
    elif counts["cannot_prove"]:
        verdict, reason = "cannot_prove", "rooms_unchecked"
    elif media is None or media.error:
        verdict, reason = "cannot_prove", "media_unchecked"
    else:
        verdict = "proven"
    return RunVerdict(
        verdict,
        rooms=len(rooms),
        proven=counts["proven"],
        violations=counts["violations"],
        cannot_prove=counts["cannot_prove"],
        policy_problems=problems,
        reason=reason,
    )
