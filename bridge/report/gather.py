"""Builds the report's data from the database, and from the homeserver when it answers.

Every table is read with plain SQL (rooms, room policies, memberships, verified
accounts, mail links, retention audits, inactive rooms, the audit log), never through
another capability's classes. What only the homeserver knows now (room names, the
encryption state, joined members, ``m.room.retention``) comes through ``LiveRoomsPort``;
when it does not answer, the report is built from the database alone and says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from mautrix.util.async_db import Database

from bridge.report.model import (
    CATEGORIES,
    ChainStatus,
    DayCount,
    LiveRoom,
    ReportData,
    RetentionRun,
    RoomRow,
    category_of,
    policy_state,
)

log = logging.getLogger("santeguard.report")

MS_PER_DAY = 86_400_000


class LiveRoomsPort(Protocol):
    """Rooms as the homeserver shows them to the enforcement user."""

    async def joined_rooms(self) -> list[str]: ...

    async def room(self, room_id: str) -> LiveRoom | None:
        """None when the room cannot be seen (the enforcement user is not in it)."""
        ...


class ChainResult(Protocol):
    @property
    def ok(self) -> bool: ...
    @property
    def entries(self) -> int: ...
    @property
    def first_bad_seq(self) -> int | None: ...


class ChainVerifierPort(Protocol):
    """The audit log's verification (``AuditLog.verify`` or the sealed log's)."""

    async def verify(self) -> ChainResult: ...


def _never_own(user_id: str) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class GatherSettings:
    network: str
    protect_by_default: bool = True
    is_own_user: Callable[[str], bool] = _never_own  # SantéGuard's bot, enforcer, ghosts
    bounds_ms: tuple[int, int] | None = None  # the network's (min, max) retention
    period_days: int = 30
    live_concurrency: int = 8


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _day_start_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


@dataclass(slots=True)
class _Audit:
    verdict: str
    max_lifetime_ms: int | None
    policy_state: str
    checked: int
    purged: int
    present: int
    evidence: int
    reason: str | None
    at_ms: int


def _evidence_count(raw: Any) -> int:
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return 0
    return len(value) if isinstance(value, list) else 0


class ReportGatherer:
    def __init__(
        self,
        db: Database,
        settings: GatherSettings,
        *,
        live: LiveRoomsPort | None = None,
        chain: ChainVerifierPort | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._settings = settings
        self._live = live
        self._chain = chain
        self._clock = clock

    async def gather(self, language: str) -> ReportData:
        now = self._clock()
        now_ms = int(now.timestamp() * 1000)
        s = self._settings
        policies = {
            str(r["room_id"]): (_bool(r["protected"]), bool(r["admin_room"]))
            for r in await self._db.fetch("SELECT room_id, protected, admin_room FROM room_policy")
        }
        bot_rooms = {
            str(r["room_id"])
            for r in await self._db.fetch("SELECT room_id FROM room WHERE joined = true")
        }
        db_members: dict[str, list[str]] = defaultdict(list)
        for r in await self._db.fetch(
            "SELECT room_id, user_id FROM room_member WHERE membership = 'join'"
        ):
            db_members[str(r["room_id"])].append(str(r["user_id"]))
        verified = {
            str(r["user_id"])
            for r in await self._db.fetch(
                "SELECT user_id FROM verification WHERE valid_until > $1", now_ms
            )
        }
        mailboxes = {
            str(r["room_id"]): str(r["address"])
            for r in await self._db.fetch("SELECT room_id, address FROM mail_link")
        }
        audits = await self._latest_audits()
        closed = {
            str(r["room_id"]): int(r["closed_at"])
            for r in await self._db.fetch(
                "SELECT room_id, closed_at FROM room_inactivity WHERE closed_at IS NOT NULL"
            )
        }
        encrypted_once = {
            str(r["room_id"])
            for r in await self._db.fetch(
                "SELECT DISTINCT room_id FROM audit_log WHERE action = 'encryption.enabled' "
                "AND room_id IS NOT NULL"
            )
        }
        live, reached = await self._live_rooms()
        room_ids = (
            set(policies)
            | bot_rooms
            | {room for room, users in db_members.items() if users}
            | set(mailboxes)
            | set(audits)
            | set(closed)
            | set(live)
        )
        rows = []
        for room_id in room_ids:
            protected, admin_room = policies.get(room_id, (None, False))
            is_protected = (
                False if admin_room else (s.protect_by_default if protected is None else protected)
            )
            seen = live.get(room_id)
            audit = audits.get(room_id)
            members: Iterable[str] | None = (
                seen.members if seen is not None else db_members.get(room_id)
            )
            people = [u for u in (members or ()) if not s.is_own_user(u)]
            if seen is not None:
                encrypted: bool | None = seen.encrypted
                lifetime = seen.retention.get("max_lifetime") if seen.retention else None
                max_lifetime = lifetime if isinstance(lifetime, int) else None
                state: str | None = policy_state(seen.retention, s.bounds_ms)
            else:
                # Encryption, once on, cannot be turned off: an audited switch-on stands.
                encrypted = True if room_id in encrypted_once else None
                max_lifetime = audit.max_lifetime_ms if audit else None
                state = audit.policy_state if audit else None
            rows.append(
                RoomRow(
                    room_id=room_id,
                    name=seen.name if seen is not None else None,
                    protected=is_protected,
                    admin_room=admin_room,
                    encrypted=encrypted,
                    max_lifetime_ms=max_lifetime,
                    policy_state=state,
                    proof=audit.verdict if audit else None,
                    proof_reason=audit.reason if audit else None,
                    evidence_count=audit.evidence if audit else 0,
                    checked=audit.checked if audit else 0,
                    purged=audit.purged if audit else 0,
                    present=audit.present if audit else 0,
                    verified_members=sum(1 for u in people if u in verified),
                    unverified_members=tuple(sorted(u for u in people if u not in verified)),
                    members_known=members is not None,
                    mailbox=mailboxes.get(room_id),
                    last_audit_ms=audit.at_ms if audit else None,
                    closed_ms=closed.get(room_id),
                    live=seen is not None,
                )
            )
        rows.sort(key=_room_order)
        return ReportData(
            generated_at=now,
            network=s.network,
            language=language,
            rooms=tuple(rows),
            decisions=await self._decisions(now),
            chain=await self._verify_chain(),
            last_run=await self._last_run(),
            homeserver_reached=reached,
            rooms_not_reached=sum(1 for r in rows if not r.live) if reached else 0,
            period_days=s.period_days,
            bounds_days=(
                (s.bounds_ms[0] / MS_PER_DAY, s.bounds_ms[1] / MS_PER_DAY) if s.bounds_ms else None
            ),
        )

    async def _latest_audits(self) -> dict[str, _Audit]:
        """Each room's row in the latest finished purge-proof audit that covered it."""
        rows = await self._db.fetch(
            "SELECT a.room_id, a.verdict, a.max_lifetime_ms, a.policy_state, a.checked, "
            "a.purged, a.present, a.evidence, a.reason, r.finished_at "
            "FROM retention_audit_room a JOIN retention_audit_run r ON r.run_id = a.run_id "
            "WHERE a.run_id = (SELECT MAX(b.run_id) FROM retention_audit_room b "
            "JOIN retention_audit_run c ON c.run_id = b.run_id "
            "WHERE b.room_id = a.room_id AND c.finished_at IS NOT NULL)"
        )
        return {
            str(r["room_id"]): _Audit(
                verdict=str(r["verdict"]),
                max_lifetime_ms=None if r["max_lifetime_ms"] is None else int(r["max_lifetime_ms"]),
                policy_state=str(r["policy_state"]),
                checked=int(r["checked"] or 0),
                purged=int(r["purged"] or 0),
                present=int(r["present"] or 0),
                evidence=_evidence_count(r["evidence"]),
                reason=None if r["reason"] is None else str(r["reason"]),
                at_ms=int(r["finished_at"]),
            )
            for r in rows
        }

    async def _last_run(self) -> RetentionRun | None:
        r = await self._db.fetchrow(
            "SELECT run_id, started_at, finished_at, verdict FROM retention_audit_run "
            "ORDER BY run_id DESC LIMIT 1"
        )
        if r is None:
            return None
        return RetentionRun(
            run_id=int(r["run_id"]),
            started_ms=int(r["started_at"]),
            finished_ms=None if r["finished_at"] is None else int(r["finished_at"]),
            verdict=None if r["verdict"] is None else str(r["verdict"]),
        )

    async def _decisions(self, now: datetime) -> tuple[DayCount, ...]:
        """Audited decisions per UTC day and category, every day of the period present."""
        today = now.astimezone(UTC).date()
        first = today - timedelta(days=self._settings.period_days - 1)
        counts: dict[date, dict[str, int]] = {
            first + timedelta(days=i): dict.fromkeys(CATEGORIES, 0)
            for i in range(self._settings.period_days)
        }
        rows = await self._db.fetch(
            f"SELECT ts / {MS_PER_DAY} AS day, action, COUNT(*) AS n FROM audit_log "
            "WHERE ts >= $1 GROUP BY ts / 86400000, action",
            _day_start_ms(first),
        )
        epoch = date(1970, 1, 1)
        for r in rows:
            day = epoch + timedelta(days=int(r["day"]))
            if day in counts:
                bucket = counts[day]
                category = category_of(str(r["action"]))
                bucket[category] = bucket.get(category, 0) + int(r["n"])
        return tuple(DayCount(day, counts[day]) for day in sorted(counts))

    async def _verify_chain(self) -> ChainStatus:
        if self._chain is None:
            return ChainStatus(checked=False)
        try:
            result = await self._chain.verify()
        except Exception as e:  # the report still renders; it says "not verified"
            log.warning("Audit log verification failed for the report: %s", type(e).__name__)
            return ChainStatus(checked=False)
        return ChainStatus(
            checked=True,
            ok=bool(result.ok),
            entries=int(result.entries),
            first_bad_seq=result.first_bad_seq,
        )

    async def _live_rooms(self) -> tuple[dict[str, LiveRoom], bool]:
        """The enforcement user's rooms as the homeserver shows them; (rooms, reached)."""
        port = self._live
        if port is None:
            return {}, False
        try:
            joined = await port.joined_rooms()
        except Exception as e:  # unreachable, refused, …: the database still tells a lot
            log.warning("Homeserver not reached for the report: %s", type(e).__name__)
            return {}, False
        limit = asyncio.Semaphore(max(1, self._settings.live_concurrency))

        async def one(room_id: str) -> tuple[str, LiveRoom | None]:
            async with limit:
                try:
                    return room_id, await port.room(room_id)
                except Exception as e:
                    log.warning("Room %s not read for the report: %s", room_id, type(e).__name__)
                    return room_id, None

        found = await asyncio.gather(*(one(r) for r in joined))
        return {room: seen for room, seen in found if seen is not None}, True


_ATTENTION = {"violations": 0, "cannot_prove": 1}


def _room_order(row: RoomRow) -> tuple[int, int, str, str]:
    """Rooms needing attention first (violations, cannot prove, unverified members in a
    protected room), then by name."""
    attention = _ATTENTION.get(row.proof or "", 3)
    if row.protected and row.unverified_members:
        attention = min(attention, 2)
    return (attention, 0 if row.protected else 1, (row.name or "").casefold(), row.room_id)
