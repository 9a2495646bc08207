"""Durable enforcement: removals are planned in the database and carried out until done.

A change that calls for removals (an unbinding, a stricter room rule, a member the
backstop saw join) writes one ``enforcement`` row per (room, member) *in the same
transaction* as the change. A worker, run by the scheduler and woken on each plan,
claims due rows, asks the gate again (the facts may have changed back), checks the
member's current membership on the homeserver, and kicks (which also revokes an
invite). A row is deleted only once the homeserver confirmed the member is gone, or
the gate admits them; failures are retried with backoff, across restarts, and the
admins are alerted when a removal keeps failing. Nothing depends on one event or one
HTTP call having succeeded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from mautrix.util.async_db import Connection, Database, Scheme

from bot.i18n import Translator
from bridge.core.decision import Decision
from bridge.core.errors import TransientError
from bridge.core.ports import AlertPort, AuditPort, CredentialPort
from bridge.db.txn import write_transaction
from bridge.gate import policy
from bridge.gate.decide import Gatekeeper, reason_bilingual, reason_text
from bridge.gate.store import RoomPolicyStore

log = logging.getLogger("santeguard.enforce")

# A removal already pending keeps why it was planned (a sweep re-planning it must not
# turn "no longer practises" into "not verified") and its backoff; it only gains a
# reason if it had none.
_UPSERT = (
    "INSERT INTO enforcement (room_id, user_id, reason, trigger, created_at, due_at) "
    "VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (room_id, user_id) DO UPDATE SET "
    "reason = CASE WHEN enforcement.reason = '' THEN excluded.reason "
    "ELSE enforcement.reason END"
)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Work:
    room_id: str
    user_id: str
    reason: str
    trigger: str
    attempts: int
    alerted: bool


class EnforcementStore:
    def __init__(self, db: Database, *, lease_ms: int = 120_000) -> None:
        self.db = db
        self._lease = lease_ms

    async def plan(self, conn: Connection, rows: list[tuple[str, str, str, str]]) -> None:
        """Rows of (room, user, reason, trigger), inside the caller's transaction."""
        now = _now_ms()
        await conn.executemany(_UPSERT, [(r, u, reason, t, now) for r, u, reason, t in rows])

    async def claim(self, limit: int) -> list[Work]:
        """Due rows, claimed for the lease so no other worker takes them meanwhile."""
        now = _now_ms()
        lock = " FOR UPDATE SKIP LOCKED" if self.db.scheme != Scheme.SQLITE else ""
        async with write_transaction(self.db) as conn:
            rows = await conn.fetch(
                "UPDATE enforcement SET claimed_until = $1 WHERE (room_id, user_id) IN ("
                "SELECT room_id, user_id FROM enforcement WHERE due_at <= $2 "
                "AND (claimed_until IS NULL OR claimed_until < $2) "
                f"ORDER BY due_at LIMIT $3{lock}) "
                "RETURNING room_id, user_id, reason, trigger, attempts, alerted",
                now + self._lease,
                now,
                limit,
            )
        return [
            Work(
                str(r["room_id"]),
                str(r["user_id"]),
                str(r["reason"]),
                str(r["trigger"]),
                int(r["attempts"]),
                bool(r["alerted"]),
            )
            for r in rows
        ]

    async def done(self, work: Work) -> None:
        await self.db.execute(
            "DELETE FROM enforcement WHERE room_id = $1 AND user_id = $2",
            work.room_id,
            work.user_id,
        )

    async def retry(self, work: Work, delay_s: float, error: str, *, alerted: bool) -> None:
        await self.db.execute(
            "UPDATE enforcement SET due_at = $3, attempts = attempts + 1, last_error = $4, "
            "alerted = $5, claimed_until = NULL WHERE room_id = $1 AND user_id = $2",
            work.room_id,
            work.user_id,
            _now_ms() + int(delay_s * 1000),
            error[:300],
            alerted,
        )

    async def next_due_in(self) -> float | None:
        """Seconds until the next row is due (0 if one is due now), None if none is left."""
        due = await self.db.fetchval(
            "SELECT MIN(CASE WHEN claimed_until IS NULL OR claimed_until < due_at "
            "THEN due_at ELSE claimed_until END) FROM enforcement"
        )
        return None if due is None else max(0.0, (int(due) - _now_ms()) / 1000)

    async def release_claims(self) -> None:
        """At start: claims held by a process that died are released at once rather than
        after their lease. (One instance per database; several replicas would need to
        release only their own claims.)"""
        await self.db.execute("UPDATE enforcement SET claimed_until = NULL")

    async def pending(self) -> int:
        return int(await self.db.fetchval("SELECT COUNT(*) FROM enforcement") or 0)


class EnforcerMatrixPort(Protocol):
    """The enforcement user's side of the homeserver (no E2EE device, in every room)."""

    bot_mxid: str

    async def membership(self, room_id: str, user_id: str) -> str | None: ...
    async def kick(self, room_id: str, user_id: str, reason: str) -> None: ...
    async def send_notice(self, room_id: str, text: str, html: str | None = None) -> str: ...


class Enforcer:
    """Plans removals (in the caller's transaction) and carries them out (scheduled job)."""

    def __init__(
        self,
        store: EnforcementStore,
        rooms: RoomPolicyStore,
        gatekeeper: Gatekeeper,
        credentials: CredentialPort,
        matrix: EnforcerMatrixPort,
        audit: AuditPort,
        alerts: AlertPort,
        translator: Translator,
        *,
        language: str = "fr",
        alert_after: int = 5,
        max_backoff_seconds: float = 300.0,
        batch: int = 20,
        concurrency: int = 4,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._rooms = rooms
        self._gk = gatekeeper
        self._credentials = credentials
        self._matrix = matrix
        self._audit = audit
        self._alerts = alerts
        self._t = translator
        self._lang = language
        self._alert_after = alert_after
        self._max_backoff = max_backoff_seconds
        self._batch = batch
        self._sem = asyncio.Semaphore(concurrency)
        self._clock = clock
        self.on_planned: Callable[[], None] = lambda: None

    # -- planning ---------------------------------------------------------------------

    def wake(self) -> None:
        self.on_planned()

    async def plan_unbound(
        self, conn: Connection, user_id: str, *, trigger: str, reason: str | None = None
    ) -> list[str]:
        """The rooms an unbound user must leave, written inside the unbinding transaction."""
        now = self._clock()
        rooms = [
            r
            for r in await self._rooms.rooms_via(conn, user_id)
            if not policy.may_be_member(
                user_id, None, self._rooms.room(r), self._gk.network, now
            ).allow
        ]
        await self._store.plan(conn, [(r, user_id, reason or "", trigger) for r in rooms])
        return rooms

    async def plan_room(
        self, conn: Connection, room_id: str, new: policy.RoomPolicy, *, trigger: str
    ) -> list[str]:
        """The members a new room policy no longer admits, written with the policy."""
        now = self._clock()
        users = [
            u
            for u in await self._rooms.members_via(conn, room_id)
            if not policy.may_be_member(
                u, self._credentials.verification(u), new, self._gk.network, now
            ).allow
        ]
        await self._store.plan(conn, [(room_id, u, "", trigger) for u in users])
        return users

    async def plan_members(self, pairs: list[tuple[str, str]], *, trigger: str) -> None:
        """(room, user) pairs the gate does not admit, seen by the backstop or a sweep."""
        if not pairs:
            return
        async with write_transaction(self._store.db) as conn:
            await self._store.plan(conn, [(r, u, "", trigger) for r, u in pairs])
        self.wake()

    # -- carrying out -----------------------------------------------------------------

    async def recover(self) -> None:
        """At start: work a previous process claimed and never finished is due again."""
        await self._store.release_claims()

    async def run_due(self) -> float | None:
        """Carry out every due removal; return the delay until the next one is due."""
        while batch := await self._store.claim(self._batch):
            await asyncio.gather(*(self._guarded(w) for w in batch))
        return await self._store.next_due_in()

    async def _guarded(self, work: Work) -> None:
        async with self._sem:
            try:
                await self._execute(work)
            except Exception as e:  # never lose the row: it is retried after its lease
                log.exception("Enforcement of %s in %s failed", work.user_id, work.room_id)
                await self._store.retry(
                    work, self._backoff(work), type(e).__name__, alerted=work.alerted
                )

    def _decision(self, work: Work) -> Decision:
        decision = self._gk.member_decision(work.user_id, work.room_id)
        if not decision.allow and work.reason and decision.reason == "not_verified":
            return Decision.no(work.reason, user=work.user_id)
        return decision

    def _backoff(self, work: Work, *, permanent: bool = False) -> float:
        base = 30.0 if permanent else 1.0
        return float(min(self._max_backoff, base * 2 ** min(work.attempts, 10)))

    async def _execute(self, work: Work) -> None:
        decision = self._decision(work)
        if decision.allow:
            await self._store.done(work)  # admitted again meanwhile: nothing to do
            return
        room, user = work.room_id, work.user_id
        try:
            membership = await self._matrix.membership(room, user)
            if membership in ("join", "invite", "knock"):
                await self._matrix.kick(room, user, reason_bilingual(self._t, decision, self._lang))
        except TransientError as e:
            await self._failed(work, decision, str(e), permanent=False)
            return
        except Exception as e:
            await self._failed(work, decision, f"{type(e).__name__}: {e}", permanent=True)
            return
        # The row goes last: a crash before it means the next attempt finds the member
        # gone and finishes quietly, never a kick without its audit entry.
        await self._rooms.set_membership(room, user, "leave")
        if membership not in ("join", "invite", "knock"):
            log.info("%s already gone from %s (%s)", user, room, membership)
            await self._store.done(work)
            return
        await self._audit.record(
            self._matrix.bot_mxid,
            "backstop.removed",
            room_id=room,
            subject=user,
            details={"reason": decision.reason, "trigger": work.trigger},
        )
        await self._store.done(work)
        log.info("Removed %s from %s: %s", user, room, decision.reason)
        try:
            await self._matrix.send_notice(room, reason_text(self._t, decision, self._lang))
        except Exception as e:  # the removal stands; the notice is best effort
            log.warning("Could not post the removal notice in %s: %s", room, type(e).__name__)

    async def _failed(self, work: Work, decision: Decision, error: str, *, permanent: bool) -> None:
        """Retry later; tell the admins when it is refused, or keeps failing."""
        alert = not work.alerted and (permanent or work.attempts + 1 >= self._alert_after)
        log.warning(
            "Could not remove %s from %s (attempt %d): %s",
            work.user_id,
            work.room_id,
            work.attempts + 1,
            error,
        )
        await self._store.retry(
            work, self._backoff(work, permanent=permanent), error, alerted=work.alerted or alert
        )
        if alert:
            await self._audit.record(
                self._matrix.bot_mxid,
                "backstop.remove_failed",
                room_id=work.room_id,
                subject=work.user_id,
                details={
                    "reason": decision.reason,
                    "trigger": work.trigger,
                    "attempts": work.attempts + 1,
                },
            )
            await self._alerts.alert(
                "alert.remove_failed",
                user=work.user_id,
                room=work.room_id,
                reason=decision.reason,
                attempts=work.attempts + 1,
            )
