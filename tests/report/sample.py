"""A realistic report (a health network's rooms), shared by the render and browser tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from bot.i18n import Translator
from bridge.report.model import (
    CATEGORIES,
    ChainStatus,
    DayCount,
    ReportData,
    RetentionRun,
    RoomRow,
)
from bridge.report.text import CATALOG

NOW = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
DAY = 86_400_000
HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)>"


def translator() -> Translator:
    return Translator(strict=True).merged(CATALOG)


def rooms() -> tuple[RoomRow, ...]:
    at = int((NOW - timedelta(hours=3)).timestamp() * 1000)
    return (
        RoomRow(
            room_id="!cardio:chu-exemple.fr",
            name="RCP cardiologie",
            protected=True,
            admin_room=False,
            encrypted=True,
            max_lifetime_ms=90 * DAY,
            policy_state="ok",
            proof="proven",
            checked=412,
            purged=412,
            verified_members=14,
            mailbox="rcp-cardio@chu-exemple.mssante.fr",
            last_audit_ms=at,
            live=True,
        ),
        RoomRow(
            room_id="!onco:chu-exemple.fr",
            name="Staff oncologie",
            protected=True,
            admin_room=False,
            encrypted=True,
            max_lifetime_ms=180 * DAY,
            policy_state="ok",
            proof="violations",
            evidence_count=20,
            present=57,
            verified_members=9,
            unverified_members=("@interne.stage:chu-exemple.fr",),
            last_audit_ms=at,
            live=True,
        ),
        RoomRow(
            room_id="!ville:chu-exemple.fr",
            name="Ville-hôpital Nord",
            protected=True,
            admin_room=False,
            encrypted=True,
            max_lifetime_ms=400 * DAY,
            policy_state="out_of_bounds",
            proof="cannot_prove",
            proof_reason="not_admin",
            verified_members=31,
            last_audit_ms=at,
            live=True,
        ),
        RoomRow(
            room_id="!admin:chu-exemple.fr",
            name="Administration SantéGuard",
            protected=False,
            admin_room=True,
            encrypted=True,
            max_lifetime_ms=None,
            policy_state="missing",
            proof=None,
            verified_members=0,
            unverified_members=("@dsi.admin:chu-exemple.fr",),
            live=True,
        ),
        RoomRow(
            room_id="!cafe:chu-exemple.fr",
            name="Cafétéria & annonces",
            protected=False,
            admin_room=False,
            encrypted=False,
            max_lifetime_ms=None,
            policy_state=None,
            proof=None,
            verified_members=3,
            unverified_members=("@accueil:chu-exemple.fr", "@secretariat:chu-exemple.fr"),
            closed_ms=at - 2 * DAY,
            live=True,
        ),
        RoomRow(
            room_id="!hostile:chu-exemple.fr",
            name=HOSTILE,
            protected=True,
            admin_room=False,
            encrypted=None,
            max_lifetime_ms=30 * DAY,
            policy_state="ok",
            proof="proven",
            proof_reason="nothing_expired",
            verified_members=2,
            members_known=True,
            mailbox='"><script>x</script>@evil.example',
            last_audit_ms=at,
        ),
    )


def decisions(days: int = 30) -> tuple[DayCount, ...]:
    first = NOW.date() - timedelta(days=days - 1)
    out = []
    for i in range(days):
        day: date = first + timedelta(days=i)
        weekday = day.weekday() < 5
        counts = dict.fromkeys(CATEGORIES, 0)
        counts.update(
            admissions=(12 + i % 7) if weekday else 2,
            refusals=(3 + i % 4) if weekday else 1,
            removals=i % 3,
            encryption=1 if i % 9 == 0 else 0,
            identity=(4 + i % 3) if weekday else 0,
            rooms=1 if i % 5 == 0 else 0,
            retention=2 if i % 7 == 0 else 0,
            mail=(6 + i % 5) if weekday else 1,
            commands=(5 + i % 6) if weekday else 1,
            other=i % 2,
        )
        out.append(DayCount(day, counts))
    return tuple(out)


def report(language: str = "fr", **changes: object) -> ReportData:
    base: dict[str, object] = {
        "generated_at": NOW,
        "network": "chu-exemple.fr",
        "language": language,
        "rooms": rooms(),
        "decisions": decisions(),
        "chain": ChainStatus(checked=True, ok=True, entries=18342),
        "last_run": RetentionRun(
            run_id=42,
            started_ms=int(NOW.timestamp() * 1000) - 4 * 3_600_000,
            finished_ms=int(NOW.timestamp() * 1000) - 3 * 3_600_000,
            verdict="violations",
        ),
        "homeserver_reached": True,
        "period_days": 30,
        "bounds_days": (1.0, 365.0),
    }
    base.update(changes)
    return ReportData(**base)  # type: ignore[arg-type]
