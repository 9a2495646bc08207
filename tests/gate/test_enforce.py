"""Durable enforcement against a real database (SQLite and PostgreSQL), homeserver faked.

The homeserver side is a small fake so that each failure mode can be chosen exactly;
the real-Synapse tests (tests/test_enforcement_durable.py) cover the same paths end to end.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mautrix.util.async_db import Database

from bridge.app.wiring import build_translator
from bridge.core.errors import TransientError
from bridge.db.txn import write_transaction
from bridge.devtools.people import practitioner
from bridge.gate.decide import Gatekeeper
from bridge.gate.enforce import EnforcementStore, Enforcer
from bridge.gate.policy import NetworkPolicy, RoomPolicy
from bridge.gate.store import RoomPolicyStore
from bridge.identity.model import Verification
from bridge.identity.store import VerificationStore

ROOM, OTHER = "!room:x", "!other:x"
DOC, ANON = "@doc:x", "@anon:x"
NETWORK = NetworkPolicy(
    home_server="x", allowed_servers=frozenset(), exempt_users=frozenset(), exempt_user_pattern=None
)


class FakeMatrix:
    """The enforcement user's homeserver: memberships, and faults chosen by the test."""

    bot_mxid = "@santeguard_control:x"

    def __init__(self) -> None:
        self.members: dict[tuple[str, str], str] = {}
        self.transient_failures = 0
        self.refuse = False
        self.kicks: list[tuple[str, str, str]] = []
        self.notices: list[tuple[str, str]] = []

    async def membership(self, room_id: str, user_id: str) -> str | None:
        return self.members.get((room_id, user_id))

    async def kick(self, room_id: str, user_id: str, reason: str) -> None:
        if self.transient_failures:
            self.transient_failures -= 1
            raise TransientError("502 from the homeserver (test)")
        if self.refuse:
            raise PermissionError("M_FORBIDDEN: cannot kick a room creator (test)")
        self.kicks.append((room_id, user_id, reason))
        self.members[(room_id, user_id)] = "leave"

    async def send_notice(self, room_id: str, text: str, html: str | None = None) -> str:
        self.notices.append((room_id, text))
        return "$notice"


class Recorder:
    def __init__(self) -> None:
        self.entries: list[tuple[str, str | None]] = []
        self.alerts: list[tuple[str, dict[str, object]]] = []

    async def record(self, actor: str, action: str, **kw: Any) -> str:
        self.entries.append((action, kw.get("subject")))
        return "h"

    async def alert(self, key: str, /, **params: object) -> None:
        self.alerts.append((key, params))


async def _setup(db: Database) -> tuple[Enforcer, EnforcementStore, FakeMatrix, Recorder, Any]:
    verifications, rooms = VerificationStore(db), RoomPolicyStore(db)
    await verifications.load()
    await rooms.load()
    now = datetime.now(UTC)
    await verifications.bind(
        DOC,
        Verification.of(
            practitioner(1, last="EXEMPLE", first="Julien"), "manual", now, timedelta(days=30)
        ),
        "test",
    )
    rec, matrix, t = Recorder(), FakeMatrix(), build_translator(strict=True)
    gk = Gatekeeper(rooms, verifications, NETWORK, rec, t)
    store = EnforcementStore(db)
    enforcer = Enforcer(store, rooms, gk, verifications, matrix, rec, rec, t, alert_after=3)
    for room in (ROOM, OTHER):
        for user in (DOC, ANON):
            await rooms.set_membership(room, user, "join")
            matrix.members[(room, user)] = "join"
    return enforcer, store, matrix, rec, verifications


async def _drain(enforcer: Enforcer, store: EnforcementStore) -> None:
    """Run the worker until nothing is due now (retries are made due at once)."""
    for _ in range(20):
        await enforcer.run_due()
        await store.db.execute("UPDATE enforcement SET due_at = 0")
        if not await store.pending():
            return


async def test_unbinding_plans_removals_in_the_same_transaction(db: Database) -> None:
    enforcer, store, matrix, rec, verifications = await _setup(db)
    planned: list[str] = []

    async def plan(conn: Any) -> None:
        planned.extend(await enforcer.plan_unbound(conn, DOC, trigger="test"))

    await verifications.unbind(DOC, then=plan)
    assert sorted(planned) == [OTHER, ROOM] and await store.pending() == 2
    await _drain(enforcer, store)
    assert sorted(k[:2] for k in matrix.kicks) == [(OTHER, DOC), (ROOM, DOC)]
    assert await store.pending() == 0
    assert ("backstop.removed", DOC) in rec.entries
    assert all(DOC in text for _, text in matrix.notices)


async def test_a_failed_transaction_plans_nothing(db: Database) -> None:
    enforcer, store, _, _, _ = await _setup(db)

    class Boom(Exception):
        pass

    try:
        async with write_transaction(db) as conn:
            await enforcer.plan_unbound(conn, ANON, trigger="test")
            raise Boom
    except Boom:
        pass
    assert await store.pending() == 0


async def test_transient_failures_are_retried_until_done_and_alert_once(db: Database) -> None:
    enforcer, store, matrix, rec, _ = await _setup(db)
    matrix.transient_failures = 4  # more than alert_after (3)
    await enforcer.plan_members([(ROOM, ANON)], trigger="test")
    await _drain(enforcer, store)
    assert matrix.kicks and matrix.kicks[0][:2] == (ROOM, ANON)
    assert await store.pending() == 0
    assert [k for k, _ in rec.alerts] == ["alert.remove_failed"]  # once, at the 3rd failure
    assert rec.entries.count(("backstop.remove_failed", ANON)) == 1


async def test_a_refused_kick_alerts_at_once_and_keeps_the_work(db: Database) -> None:
    enforcer, store, matrix, rec, _ = await _setup(db)
    matrix.refuse = True
    await enforcer.plan_members([(ROOM, ANON)], trigger="test")
    await enforcer.run_due()
    assert [k for k, _ in rec.alerts] == ["alert.remove_failed"]
    assert await store.pending() == 1  # never dropped: retried later
    matrix.refuse = False
    await _drain(enforcer, store)
    assert await store.pending() == 0 and matrix.kicks[-1][:2] == (ROOM, ANON)


async def test_already_gone_or_admitted_again_needs_no_kick(db: Database) -> None:
    enforcer, store, matrix, _, _ = await _setup(db)
    matrix.members[(ROOM, ANON)] = "leave"
    await enforcer.plan_members([(ROOM, ANON), (OTHER, DOC)], trigger="test")
    await _drain(enforcer, store)
    assert matrix.kicks == []  # ANON already left; DOC is admitted (verified)
    assert await store.pending() == 0


async def test_a_policy_change_plans_only_the_members_it_excludes(db: Database) -> None:
    enforcer, _, _, _, _ = await _setup(db)
    nurses_only = RoomPolicy(professions=frozenset({"60"}))
    async with write_transaction(db) as conn:
        planned = await enforcer.plan_room(conn, ROOM, nurses_only, trigger="test")
    assert sorted(planned) == [ANON, DOC]  # a physician and an unverified member
    async with write_transaction(db) as conn:
        assert await enforcer.plan_room(conn, OTHER, RoomPolicy(protected=False), trigger="t") == []


async def test_claims_of_a_dead_process_are_released_at_start(db: Database) -> None:
    enforcer, store, _, _, _ = await _setup(db)
    await enforcer.plan_members([(ROOM, ANON)], trigger="test")
    assert len(await store.claim(10)) == 1  # claimed, then the process "dies"
    assert await store.claim(10) == []  # nobody else takes it during the lease
    await enforcer.recover()
    assert len(await store.claim(10)) == 1


async def test_a_re_plan_keeps_why_the_removal_was_planned_and_its_backoff(db: Database) -> None:
    enforcer, store, matrix, _, verifications = await _setup(db)

    async def plan(conn: Any) -> None:
        await enforcer.plan_unbound(conn, DOC, trigger="reverification", reason="no_longer_active")

    await verifications.unbind(DOC, then=plan)
    matrix.transient_failures = 1
    await enforcer.run_due()  # fails once: retried after a backoff
    due_before = await db.fetchval("SELECT due_at FROM enforcement WHERE room_id = $1", ROOM)
    await enforcer.plan_members([(ROOM, DOC)], trigger="reconcile")  # the sweep re-plans it
    row = await db.fetchrow(
        "SELECT reason, trigger, due_at FROM enforcement WHERE room_id = $1", ROOM
    )
    assert (row["reason"], row["trigger"], row["due_at"]) == (
        "no_longer_active",
        "reverification",
        due_before,
    )
    await _drain(enforcer, store)
    reasons = {text for _, text in matrix.notices}
    assert all("n'exerce plus" in text for text in reasons)
