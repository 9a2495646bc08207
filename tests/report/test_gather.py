"""The report's data from a real, upgraded database (SQLite and PostgreSQL), with the
homeserver's view faked at its port, and without it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mautrix.util.async_db import Database

from bridge.report.gather import GatherSettings, ReportGatherer
from bridge.report.model import LiveRoom, category_of

NOW = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
DAY = 86_400_000
HS = "chu-exemple.fr"
DOC, NURSE, INTERN, EXPIRED = (
    f"@{n}:{HS}" for n in ("dr.martin", "ide.durand", "interne", "dr.old")
)
BOT, ENFORCER, GHOST = f"@santeguard:{HS}", f"@santeguard_control:{HS}", f"@santeguard_mail_x:{HS}"
CARDIO, ONCO, ADMIN, CAFE, LINKED = (
    f"!{n}:{HS}" for n in ("cardio", "onco", "admin", "cafe", "mail")
)


def settings() -> GatherSettings:
    return GatherSettings(
        network=HS,
        protect_by_default=True,
        is_own_user=lambda u: u in (BOT, ENFORCER, GHOST),
        bounds_ms=(1 * DAY, 365 * DAY),
        period_days=7,
    )


async def insert(db: Database, table: str, **values: object) -> None:
    names = ", ".join(values)
    marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    await db.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", *values.values())


async def fill(db: Database) -> None:
    """Rows as the capabilities write them."""
    policies = (
        (CARDIO, None, False),
        (ONCO, True, False),
        (ADMIN, False, True),
        (CAFE, False, False),
    )
    for room, protected, admin in policies:
        await insert(
            db,
            "room_policy",
            room_id=room,
            protected=protected,
            professions="",
            updated_by=DOC,
            updated_at=NOW_MS,
            admin_room=admin,
        )
    await insert(db, "room", room_id=ADMIN, language=None, joined=True, updated_at=NOW_MS)
    members = [
        (CARDIO, DOC, "join"),
        (CARDIO, NURSE, "join"),
        (CARDIO, ENFORCER, "join"),
        (ONCO, DOC, "join"),
        (ONCO, INTERN, "join"),
        (ONCO, EXPIRED, "join"),
        (ONCO, NURSE, "leave"),
        (CAFE, INTERN, "join"),
        (LINKED, DOC, "join"),
        (LINKED, GHOST, "join"),
    ]
    for room, user, membership in members:
        await insert(
            db, "room_member", room_id=room, user_id=user, membership=membership, updated_at=NOW_MS
        )
    for user, until in (
        (DOC, NOW_MS + 30 * DAY),
        (NURSE, NOW_MS + 3 * DAY),
        (EXPIRED, NOW_MS - DAY),
    ):
        await insert(
            db,
            "verification",
            user_id=user,
            idnps="8" + user[2:8],
            source="manual",
            profession_code="10",
            last_name="X",
            first_name="Y",
            checked_at=NOW_MS - DAY,
            valid_until=until,
            bound_by=DOC,
            bound_at=NOW_MS - DAY,
        )
    await insert(
        db,
        "mail_link",
        room_id=LINKED,
        address="rcp@chu-exemple.mssante.fr",
        tag="t1",
        subject="s",
        linked_by=DOC,
        linked_at=NOW_MS,
    )
    # Runs: 1 covered CARDIO and ONCO, 2 only CARDIO; 3 is unfinished.
    runs = (
        (1, NOW_MS - 2 * DAY, NOW_MS - 2 * DAY + 60_000, "violations"),
        (2, NOW_MS - DAY, NOW_MS - DAY + 60_000, "proven"),
        (3, NOW_MS - 60_000, None, None),
    )
    for run, started, finished, verdict in runs:
        await insert(
            db, "retention_audit_run", started_at=started, finished_at=finished, verdict=verdict
        )
        assert await db.fetchval("SELECT MAX(run_id) FROM retention_audit_run") == run
    evidence = json.dumps([f"$e{i}" for i in range(20)])
    audit_rows = [
        (1, CARDIO, "violations", 90 * DAY, 10, 7, 3, json.dumps(["$a", "$b", "$c"]), None),
        (1, ONCO, "violations", 180 * DAY, 50, 20, 30, evidence, None),
        (2, CARDIO, "proven", 90 * DAY, 12, 12, 0, "[]", None),
        (3, CARDIO, "cannot_prove", 90 * DAY, 0, 0, 0, "[]", "not_admin"),  # unfinished run
    ]
    for run_id, room, verdict, lifetime, checked, purged, present, ids, reason in audit_rows:
        await insert(
            db,
            "retention_audit_room",
            run_id=run_id,
            room_id=room,
            verdict=verdict,
            max_lifetime_ms=lifetime,
            policy_state="ok",
            checked=checked,
            purged=purged,
            present=present,
            evidence=ids,
            reason=reason,
        )
    await insert(
        db,
        "room_inactivity",
        room_id=CAFE,
        last_activity_ts=NOW_MS - 200 * DAY,
        announced_at=NOW_MS - 20 * DAY,
        closed_at=NOW_MS - 6 * DAY,
    )
    # Decisions on three days and one too old for the period (hashes are not checked here).
    log = [
        (NOW_MS - 1000, "member.admitted.join", CARDIO),
        (NOW_MS - 2000, "member.admitted.join", CARDIO),
        (NOW_MS - 3000, "gate.refused.user_may_join_room", ONCO),
        (NOW_MS - DAY, "backstop.removed", ONCO),
        (NOW_MS - DAY, "encryption.enabled", ONCO),
        (NOW_MS - 2 * DAY, "mail.sent", LINKED),
        (NOW_MS - 2 * DAY, "bot.command", ADMIN),
        (NOW_MS - 2 * DAY, "retention.set", CARDIO),
        (NOW_MS - 30 * DAY, "gate.refused.user_may_invite", ONCO),
    ]
    for ts, action, room in log:
        await insert(
            db,
            "audit_log",
            ts=ts,
            actor="gate",
            action=action,
            room_id=room,
            subject=None,
            details="{}",
            prev_hash="p",
            hash="h",
        )


@dataclass
class FakeChain:
    ok: bool = True
    entries: int = 9
    first_bad_seq: int | None = None

    async def verify(self) -> FakeChain:
        return self


class FakeHomeserver:
    def __init__(self, rooms: dict[str, LiveRoom], *, down: bool = False) -> None:
        self.rooms, self.down = rooms, down

    async def joined_rooms(self) -> list[str]:
        if self.down:
            raise ConnectionError("homeserver down")
        return [*self.rooms, "!hidden:chu-exemple.fr"]

    async def room(self, room_id: str) -> LiveRoom | None:
        return self.rooms.get(room_id)


def gatherer(
    db: Database, live: FakeHomeserver | None, chain: FakeChain | None = FakeChain()
) -> ReportGatherer:
    return ReportGatherer(db, settings(), live=live, chain=chain, clock=lambda: NOW)


async def test_rooms_from_the_database_alone(db: Database) -> None:
    await fill(db)
    data = await gatherer(db, FakeHomeserver({}, down=True)).gather("fr")
    assert not data.homeserver_reached and data.rooms_not_reached == 0
    rooms = {r.room_id: r for r in data.rooms}
    assert set(rooms) == {CARDIO, ONCO, ADMIN, CAFE, LINKED}
    cardio, onco, admin, cafe, linked = (rooms[r] for r in (CARDIO, ONCO, ADMIN, CAFE, LINKED))
    # Protection: NULL follows the network default; an admin room is never protected.
    assert cardio.protected and onco.protected and not admin.protected and admin.admin_room
    assert not cafe.protected and linked.protected
    # The latest *finished* audit covering each room: run 2 for CARDIO, run 1 for ONCO.
    assert (cardio.proof, cardio.checked, cardio.purged, cardio.present) == ("proven", 12, 12, 0)
    assert cardio.last_audit_ms == NOW_MS - DAY + 60_000 and cardio.proof_reason is None
    assert (onco.proof, onco.present, onco.evidence_count) == ("violations", 30, 20)
    assert onco.max_lifetime_ms == 180 * DAY and onco.policy_state == "ok"
    assert admin.proof is None and admin.max_lifetime_ms is None and admin.policy_state is None
    # Members: joined only, SantéGuard's own users left out, expired verification = unverified.
    assert (cardio.verified_members, cardio.unverified_members) == (2, ())
    assert (onco.verified_members, onco.unverified_members) == (1, (EXPIRED, INTERN))
    assert admin.members_known is False and admin.verified_members == 0
    assert (linked.verified_members, linked.unverified_members) == (1, ())
    assert linked.mailbox == "rcp@chu-exemple.mssante.fr" and cardio.mailbox is None
    assert cafe.closed_ms == NOW_MS - 6 * DAY
    # Encryption: an audited switch-on is known; nothing else is guessed.
    assert onco.encrypted is True and cardio.encrypted is None
    assert all(r.name is None and not r.live for r in data.rooms)
    # Attention first: the room with violations leads.
    assert data.rooms[0].room_id == ONCO
    assert data.last_run is not None and data.last_run.run_id == 3 and data.last_run.verdict is None
    assert data.chain.checked and data.chain.ok and data.chain.entries == 9
    assert data.bounds_days == (1.0, 365.0)


async def test_decisions_per_day_and_category(db: Database) -> None:
    await fill(db)
    data = await gatherer(db, None).gather("en")
    assert data.language == "en" and len(data.decisions) == 7
    assert [d.day for d in data.decisions][-1] == NOW.date()
    assert data.decisions[0].day == NOW.date() - timedelta(days=6)
    by_day = {d.day: d.counts for d in data.decisions}
    today, yesterday, before = (NOW.date() - timedelta(days=i) for i in range(3))
    assert by_day[today]["admissions"] == 2 and by_day[today]["refusals"] == 1
    assert by_day[yesterday]["removals"] == 1 and by_day[yesterday]["encryption"] == 1
    assert by_day[before]["mail"] == 1 and by_day[before]["commands"] == 1
    assert by_day[before]["retention"] == 1
    assert sum(data.totals().values()) == 8  # the 30-day-old refusal is outside the period
    assert category_of("retention.set") == "retention"


async def test_homeserver_view_wins_where_it_answers(db: Database) -> None:
    await fill(db)
    live = FakeHomeserver(
        {
            CARDIO: LiveRoom(
                "RCP cardiologie", True, (DOC, INTERN, ENFORCER), {"max_lifetime": 30 * DAY}
            ),
            ONCO: LiveRoom("Staff oncologie", True, (DOC,), {"max_lifetime": 400 * DAY}),
            "!new:chu-exemple.fr": LiveRoom(None, False, (NURSE, ENFORCER), None),
        }
    )
    data = await gatherer(db, live, FakeChain(ok=False, entries=9, first_bad_seq=4)).gather("fr")
    assert data.homeserver_reached
    rooms = {r.room_id: r for r in data.rooms}
    cardio, onco, new = rooms[CARDIO], rooms[ONCO], rooms["!new:chu-exemple.fr"]
    assert cardio.live and cardio.name == "RCP cardiologie" and cardio.encrypted is True
    assert (cardio.verified_members, cardio.unverified_members) == (1, (INTERN,))
    assert cardio.max_lifetime_ms == 30 * DAY and cardio.policy_state == "ok"
    assert onco.policy_state == "out_of_bounds" and onco.proof == "violations"
    assert new.encrypted is False and new.policy_state == "missing" and new.protected
    # Rooms the enforcement user cannot see keep their database view, and are counted.
    assert not rooms[ADMIN].live and data.rooms_not_reached == 3  # ADMIN, CAFE, LINKED
    assert data.chain.checked and not data.chain.ok and data.chain.first_bad_seq == 4


async def test_empty_database(db: Database) -> None:
    data = await gatherer(db, None, None).gather("fr")
    assert data.rooms == () and data.last_run is None and not data.chain.checked
    assert len(data.decisions) == 7 and sum(data.totals().values()) == 0
