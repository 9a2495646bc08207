"""What the DPO report shows, as plain data (no I/O): built by ``gather``, drawn by ``render``.

Times are milliseconds since the epoch (UTC) except ``generated_at``. ``None`` always
means "not known" (never audited, homeserver not reached), which the report says as such
rather than guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

# Order of the chart's stacks and of the totals table.
CATEGORIES: tuple[str, ...] = (
    "admissions",
    "refusals",
    "removals",
    "encryption",
    "identity",
    "rooms",
    "retention",
    "mail",
    "commands",
    "other",
)

# Audit-log action prefixes (bridge/**: ``audit.record(actor, action, …)``) → category.
# The longest matching prefix wins; anything unknown is "other".
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("member.admitted.", "admissions"),
    ("gate.refused.", "refusals"),
    ("gate.", "refusals"),
    ("backstop.", "removals"),
    ("enforcement.", "removals"),
    ("encryption.", "encryption"),
    ("identity.", "identity"),
    ("reverify.", "identity"),
    ("room.retention", "retention"),
    ("room.inactive", "retention"),
    ("retention.", "retention"),
    ("inactivity.", "retention"),
    ("purge.", "retention"),
    ("room.", "rooms"),
    ("mail.", "mail"),
    ("bot.command", "commands"),
    ("command.", "commands"),
)

VERDICTS: tuple[str, ...] = ("proven", "violations", "cannot_prove")
POLICY_STATES: tuple[str, ...] = ("ok", "missing", "out_of_bounds", "malformed", "unknown")
# Why a room's verdict is what it is (bridge/retention/proof.py), each with a report text.
REASONS: tuple[str, ...] = (
    "not_admin",
    "unreachable",
    "probe_failed",
    "scan_failed",
    "scan_incomplete",
    "nothing_expired",
    "rooms_unchecked",
    "media_unchecked",
)


def category_of(action: str) -> str:
    """The chart category of an audit-log action (pure)."""
    best, found = -1, "other"
    for prefix, category in _PREFIXES:
        if action.startswith(prefix) and len(prefix) > best:
            best, found = len(prefix), category
    return found


@dataclass(frozen=True, slots=True)
class LiveRoom:
    """A room as the homeserver shows it now (through the enforcement user)."""

    name: str | None
    encrypted: bool
    members: tuple[str, ...]  # joined
    retention: Mapping[str, object] | None  # m.room.retention content, None if absent


@dataclass(frozen=True, slots=True)
class RoomRow:
    room_id: str
    name: str | None
    protected: bool
    admin_room: bool
    encrypted: bool | None
    max_lifetime_ms: int | None
    policy_state: str | None  # ok | missing | out_of_bounds | malformed | unknown | None
    proof: str | None  # proven | violations | cannot_prove | None (never audited)
    proof_reason: str | None = None
    evidence_count: int = 0
    checked: int = 0  # expired events the last audit checked
    purged: int = 0  # of which proven gone
    present: int = 0  # expired events still on the server at the last audit
    verified_members: int = 0
    unverified_members: tuple[str, ...] = ()
    members_known: bool = True  # False: neither the homeserver nor the database knows
    mailbox: str | None = None
    last_audit_ms: int | None = None
    closed_ms: int | None = None  # closed for inactivity
    live: bool = False  # name, encryption and members come from the homeserver now


@dataclass(frozen=True, slots=True)
class DayCount:
    day: date  # UTC day
    counts: Mapping[str, int]  # category → decisions recorded that day

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class ChainStatus:
    """The audit log's hash chain: ``checked`` False when it could not be verified."""

    checked: bool
    ok: bool = False
    entries: int = 0
    first_bad_seq: int | None = None


@dataclass(frozen=True, slots=True)
class RetentionRun:
    run_id: int
    started_ms: int
    finished_ms: int | None
    verdict: str | None  # None: unfinished (running, or interrupted)


@dataclass(frozen=True, slots=True)
class ReportData:
    generated_at: datetime  # aware
    network: str  # the homeserver's server name
    language: str
    rooms: tuple[RoomRow, ...]
    decisions: tuple[DayCount, ...]  # one per day of the period, oldest first
    chain: ChainStatus
    last_run: RetentionRun | None
    homeserver_reached: bool
    rooms_not_reached: int = 0
    period_days: int = 30
    bounds_days: tuple[float, float] | None = None  # the network's retention bounds

    def totals(self) -> dict[str, int]:
        """Decisions per category over the whole period."""
        out = dict.fromkeys(CATEGORIES, 0)
        for day in self.decisions:
            for category, n in day.counts.items():
                out[category] = out.get(category, 0) + n
        return out

    def verdict_counts(self) -> dict[str, int]:
        """Rooms per retention-proof verdict; ``none`` for never audited."""
        out = {v: 0 for v in (*VERDICTS, "none")}
        for room in self.rooms:
            key = room.proof if room.proof in VERDICTS else "none"
            out[key] += 1
        return out


def _whole(value: object) -> int | None:
    """A JSON integer (not a bool, not a float: Synapse's purge job rejects both)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def policy_state(content: Mapping[str, object] | None, bounds_ms: tuple[int, int] | None) -> str:
    """A room's ``m.room.retention`` as the audit classifies it: ok, missing (no
    ``max_lifetime``), malformed, or out_of_bounds (outside ``bounds_ms`` = (min, max))."""
    if not content or content.get("max_lifetime") is None:
        return "missing"
    max_lifetime = _whole(content.get("max_lifetime"))
    if max_lifetime is None or max_lifetime <= 0:
        return "malformed"
    if "min_lifetime" in content:
        min_lifetime = _whole(content.get("min_lifetime"))
        if min_lifetime is None or not 0 <= min_lifetime <= max_lifetime:
            return "malformed"
    if bounds_ms is not None and not bounds_ms[0] <= max_lifetime <= bounds_ms[1]:
        return "out_of_bounds"
    return "ok"
