"""The purge-proof audit: is every event past its room's lifetime really gone?

For each room: its ``m.room.retention`` is judged against the network's bounds; the
ledger's non-state events older than ``lifetime + purge interval + margin`` are probed
with the admin ``fetch_event`` (404 = gone); the room is paged from its start with the
admin ``/messages`` to catch any expired event the ledger missed. The verdicts
(:mod:`bridge.retention.proof`) are stored (``retention_audit_run`` / ``_room``) and
audited. Uploads past the longest lifetime that can apply to them are deleted.

Media lifetime: the network's ``max_lifetime`` bound. An upload cannot be tied to its
rooms (an encrypted event's attachment URL is inside the ciphertext, and a forwarded
file reuses the upload in rooms its uploader never joined), and no room may keep
history longer than that bound; so an upload older than the bound plus the purge
interval is past every lifetime that can apply to it, and is deleted. Current avatars
(users' profiles, rooms' ``m.room.avatar``, per-room member avatars) are kept.

Without admin rights nothing is proven: every room is ``cannot_prove`` with the reason,
and policies are still judged from what the enforcement user sees as a member.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mautrix.util.async_db import Database

from bridge.core.errors import TransientError
from bridge.core.ports import AuditPort, Clock
from bridge.db.txn import write_transaction
from bridge.retention.admin_api import AdminApiError, AdminForbidden, EventProbe, SynapseAdmin
from bridge.retention.ledger import EventLedger
from bridge.retention.policy import RETENTION_EVENT, RetentionBounds
from bridge.retention.proof import (
    AdminState,
    MediaOutcome,
    RoomEvidence,
    RoomPolicy,
    RoomVerdict,
    RunVerdict,
    cutoff_ms,
    deepest_level,
    room_policy,
    room_verdict,
    run_verdict,
)

log = logging.getLogger("santeguard.retention.audit")
ACTOR = "retention"


class MemberView(Protocol):
    """What the audit reads without admin rights, as the enforcement user (a member of
    every protected room): :class:`~bridge.retention.admin_api.SynapseAdmin` fulfils it
    through the client API."""

    async def joined_rooms(self) -> list[str]: ...
    async def member_state(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> dict[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class RoomResult:
    room_id: str
    result: RoomVerdict


@dataclass(frozen=True, slots=True)
class AuditRun:
    """One audit's outcome (what ``!sg audit`` renders, see :func:`render`)."""

    run_id: int
    started_at: int
    finished_at: int
    admin: AdminState
    verdict: RunVerdict
    rooms: list[RoomResult]
    media: MediaOutcome | None
    totals: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        v = self.verdict
        return {
            "verdict": v.verdict,
            "reason": v.reason,
            "admin": self.admin,
            "rooms": v.rooms,
            "proven": v.proven,
            "violations": v.violations,
            "cannot_prove": v.cannot_prove,
            "policy_problems": dict(v.policy_problems),
            "policy_problem_rooms": sum(v.policy_problems.values()),
            **self.totals,
            "media_deleted": self.media.deleted if self.media else 0,
            "media_left": self.media.left if self.media else 0,
            "media_error": self.media.error if self.media else "not_run",
        }


@dataclass
class _Scan:
    present: list[str] | None = field(default_factory=list)  # expired non-state events
    complete: bool = True
    old: list[tuple[str, int | None]] = field(default_factory=list)  # every expired event, depth


class RetentionAudit:
    def __init__(
        self,
        db: Database,
        admin: SynapseAdmin,
        ledger: EventLedger,
        bounds: RetentionBounds,
        purge_interval_ms: int,
        audit: AuditPort,
        clock: Clock,
        *,
        members: MemberView | None = None,
        in_scope: Callable[[str], bool] | None = None,
        before_run: Callable[[], Awaitable[None]] | None = None,
        margin_ms: int = 300_000,
        media_lifetime_ms: int | None = None,
        concurrency: int = 8,
        max_probes_per_room: int = 2000,
        max_scan_pages: int = 50,
    ) -> None:
        self._db = db
        self._admin = admin
        self._members: MemberView = members or admin
        self._ledger = ledger
        self._bounds = bounds
        self._purge_ms = purge_interval_ms
        self._audit = audit
        self._clock = clock
        self._in_scope = in_scope
        self._before_run = before_run
        self._margin = margin_ms
        self._media_ms = media_lifetime_ms if media_lifetime_ms is not None else bounds.max_ms
        self._sem = asyncio.Semaphore(concurrency)  # homeserver requests in flight
        self._rooms_sem = asyncio.Semaphore(max(1, concurrency // 2))  # rooms in progress
        self._max_probes = max_probes_per_room
        self._max_pages = max_scan_pages

    def _now(self) -> int:
        return int(self._clock().timestamp() * 1000)

    async def run(self) -> AuditRun:
        if self._before_run is not None:
            await self._before_run()  # e.g. write the ledger's queued entries first
        started = self._now()
        async with write_transaction(self._db) as conn:
            run_id = int(
                await conn.fetchval(
                    "INSERT INTO retention_audit_run (started_at) VALUES ($1) RETURNING run_id",
                    started,
                )
            )
        is_admin = await self._admin.is_admin()
        admin: AdminState = "ok" if is_admin else "unreachable" if is_admin is None else "not_admin"
        avatars: set[str] = set()
        try:
            rooms = await (self._admin.rooms() if admin == "ok" else self._members.joined_rooms())
        except AdminForbidden:
            admin, rooms = "not_admin", []
        except (TransientError, AdminApiError):
            admin, rooms = ("unreachable" if admin == "ok" else admin), []
        results = await asyncio.gather(*(self._bounded_room(r, admin, avatars) for r in rooms))
        scoped = [r for r in results if r is not None]
        media = await self._media(avatars) if admin == "ok" else None
        verdict = run_verdict(admin, [r.result for r in scoped], media)
        finished = self._now()
        run = AuditRun(
            run_id,
            started,
            finished,
            admin,
            verdict,
            scoped,
            media,
            totals={
                **{
                    k: sum(getattr(r.result, k) for r in scoped)
                    for k in ("checked", "purged", "present")
                },
                "nothing_expired": sum(r.result.reason == "nothing_expired" for r in scoped),
            },
        )
        await self._store(run)
        await self._audit.record(
            ACTOR, "retention.audit", details={"run_id": run_id, **run.summary()}
        )
        return run

    # -- one room ---------------------------------------------------------------------

    async def _bounded_room(
        self, room_id: str, admin: AdminState, avatars: set[str]
    ) -> RoomResult | None:
        async with self._rooms_sem:
            return await self._room(room_id, admin, avatars)

    async def _room(self, room_id: str, admin: AdminState, avatars: set[str]) -> RoomResult | None:
        async with self._sem:
            content, readable = await self._retention_content(room_id, admin, avatars)
        if self._in_scope is not None and not self._in_scope(room_id):
            return None
        policy = room_policy(content, self._bounds)
        if not readable:
            policy = RoomPolicy("unknown", policy.max_lifetime_ms)
        if admin != "ok":
            return RoomResult(room_id, room_verdict(admin, policy, RoomEvidence()))
        cutoff = cutoff_ms(self._now(), policy, self._purge_ms, self._margin)
        candidates = await self._ledger.candidates(room_id, cutoff, self._max_probes)
        probes = await asyncio.gather(*(self._probe(c.event_id) for c in candidates))
        scan = await self._scan(room_id, cutoff)
        still_there = [(p.event_id, p.depth) for p in probes if p.kind == "present"]
        evidence = RoomEvidence(
            probes=[(p.event_id, p.kind) for p in probes],
            scanned_present=scan.present,
            scan_complete=scan.complete,
            boundary=deepest_level(still_there + scan.old),
            saw_expired=bool(scan.old),
        )
        verdict = room_verdict(admin, policy, evidence)
        gone = [p.event_id for p in probes if p.kind == "purged"]
        if gone:
            await self._ledger.mark_purged(gone, self._now())
        if verdict.verdict == "violations":
            await self._audit.record(
                ACTOR,
                "retention.violation",
                room_id=room_id,
                details={
                    "present": verdict.present,
                    "evidence": list(verdict.evidence),
                    "max_lifetime_ms": policy.max_lifetime_ms,
                    "cutoff_ts": cutoff,
                },
            )
        return RoomResult(room_id, verdict)

    async def _retention_content(
        self, room_id: str, admin: AdminState, avatars: set[str]
    ) -> tuple[dict[str, Any] | None, bool]:
        """The room's ``m.room.retention`` content and whether the state could be read;
        collects the avatars in its state on the way."""
        try:
            if admin != "ok":
                return await self._members.member_state(room_id, RETENTION_EVENT), True
            state = await self._admin.room_state(room_id)
        except (TransientError, AdminApiError) as e:
            log.warning("Could not read the state of %s: %s", room_id, e)
            return None, False
        content: dict[str, Any] | None = None
        for ev in state:
            body = ev.get("content") or {}
            if ev.get("type") == RETENTION_EVENT and ev.get("state_key") == "":
                content = dict(body)
            url = body.get("url") if ev.get("type") == "m.room.avatar" else body.get("avatar_url")
            if ev.get("type") in ("m.room.avatar", "m.room.member") and isinstance(url, str):
                avatars.add(url)
        return content, True

    async def _probe(self, event_id: str) -> EventProbe:
        async with self._sem:
            return await self._admin.fetch_event(event_id)

    async def _scan(self, room_id: str, cutoff: int) -> _Scan:
        """Page the room from its start; every non-state event older than the cutoff
        still listed is evidence. Stops at the first page reaching newer events."""
        scan = _Scan()
        present: list[str] = []
        token: str | None = None
        try:
            for _ in range(self._max_pages):
                async with self._sem:
                    page = await self._admin.room_messages(
                        room_id, dir="f", from_token=token, raw=True
                    )
                reached_new = False
                for ev in page.events:
                    ts, event_id = ev.get("origin_server_ts"), ev.get("event_id")
                    if not isinstance(ts, int) or not isinstance(event_id, str):
                        continue
                    if ts >= cutoff:
                        reached_new = True
                        continue
                    depth = ev.get("depth")
                    scan.old.append((event_id, depth if isinstance(depth, int) else None))
                    if "state_key" not in ev:
                        present.append(event_id)
                if reached_new or page.end is None or not page.events or page.end == token:
                    scan.present = present
                    return scan
                token = page.end
        except (TransientError, AdminApiError) as e:
            log.warning("Could not page the history of %s: %s", room_id, e)
            scan.present = None
            return scan
        scan.present, scan.complete = present, False
        return scan

    # -- media ------------------------------------------------------------------------

    async def _media(self, keep: set[str]) -> MediaOutcome:
        cutoff = self._now() - self._media_ms - self._purge_ms - self._margin
        server = self._admin.server_name
        deleted = left = skipped = 0
        try:
            users = await self._admin.users_with_media(until_ts=cutoff)
            for user in users:
                old = [m for m in await self._admin.user_media(user) if m.created_ts < cutoff]
                if not old:
                    continue
                avatar = await self._admin.user_avatar(user)
                gone: list[str] = []
                for m in old:
                    mxc = f"mxc://{server}/{m.media_id}"
                    if mxc in keep or mxc == avatar:
                        skipped += 1
                        continue
                    try:
                        ok = await self._admin.delete_media(server, m.media_id)
                    except (TransientError, AdminApiError) as e:
                        log.warning("Could not delete an upload of %s: %s", user, e)
                        ok = False
                    if ok:
                        gone.append(m.media_id)
                    else:
                        left += 1
                deleted += len(gone)
                if gone:
                    await self._audit.record(
                        ACTOR,
                        "retention.media_deleted",
                        subject=user,
                        details={"count": len(gone), "media_ids": gone[:50], "before_ts": cutoff},
                    )
        except (TransientError, AdminApiError) as e:
            log.warning("Media retention pass interrupted: %s", e)
            return MediaOutcome(deleted, left, skipped, error=type(e).__name__)
        return MediaOutcome(deleted, left, skipped)

    # -- storage ----------------------------------------------------------------------

    async def _store(self, run: AuditRun) -> None:
        rows = [
            (
                run.run_id,
                r.room_id,
                r.result.verdict,
                r.result.max_lifetime_ms,
                r.result.policy_state,
                r.result.checked,
                r.result.purged,
                r.result.present,
                json.dumps(list(r.result.evidence)),
                r.result.reason,
            )
            for r in run.rooms
        ]
        async with write_transaction(self._db) as conn:
            if rows:
                await conn.executemany(
                    "INSERT INTO retention_audit_room (run_id, room_id, verdict, "
                    "max_lifetime_ms, policy_state, checked, purged, present, evidence, reason) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    rows,
                )
            await conn.execute(
                "UPDATE retention_audit_run SET finished_at = $1, verdict = $2, summary = $3 "
                "WHERE run_id = $4",
                run.finished_at,
                run.verdict.verdict,
                json.dumps(run.summary(), sort_keys=True),
                run.run_id,
            )

    async def latest_by_room(self) -> dict[str, tuple[str, str, int]]:
        """Each room's verdict in the latest finished run that covered it:
        room → (verdict, policy_state, finished_at) (for the DPO report)."""
        rows = await self._db.fetch(
            "SELECT a.room_id, a.verdict, a.policy_state, r.finished_at "
            "FROM retention_audit_room a JOIN retention_audit_run r ON r.run_id = a.run_id "
            "WHERE r.finished_at IS NOT NULL ORDER BY a.run_id"
        )
        return {
            str(r["room_id"]): (str(r["verdict"]), str(r["policy_state"]), int(r["finished_at"]))
            for r in rows
        }
