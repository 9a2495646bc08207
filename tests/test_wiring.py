"""The composition root wires every capability: routes, commands, jobs, one translator."""

from __future__ import annotations

from pathlib import Path

from bridge.app import SanteGuard
from tests.helpers import make_config


async def test_every_capability_is_registered(tmp_path: Path) -> None:
    sg = SanteGuard(make_config(f"sqlite:///{tmp_path / 'sg.db'}"))
    try:
        assert {
            "m.room.member",
            "m.room.create",
            "m.room.message",
            "m.room.encrypted",
            "m.room.encryption",
        } <= sg.routes.event_types()
        names = {c.spec.name for c in sg.commands.registry}
        assert {"help", "ping", "status", "language", "encryption", "leave"} <= names
        assert {"verify", "unverify", "whois", "annuaire", "room"} <= names
        assert set(sg.scheduler.jobs) == {
            "wal_checkpoint",
            "import_watch",
            "prune_done",
            "reverify",
            "enforcement",
            "reconcile",
            "retention_policy",
            "retention_inactive",
            "retention_audit",
            "audit_checkpoint",
            "audit_prune",
        }
        # Least privilege: the enforcement user is not the bot (which has the device).
        assert sg.enforcer_matrix.bot_mxid != sg.matrix.bot_mxid
        assert sg.enforcer_matrix.encryptor is None
        assert sg.translator.has("gate.reason.not_verified")
        assert sg.translator.has("identity.verified") and sg.translator.has("encryption.header")
    finally:
        await sg.session.close()


async def test_ready_reports_stuck_rooms_without_failing(tmp_path: Path) -> None:
    """A stuck room is reported in /ready, and the admins alerted once; readiness itself
    does not fail (the gate still answers: failing readiness would stop every message)."""
    from bridge.spine.dispatch import StuckRoom

    sg = SanteGuard(make_config(f"sqlite:///{tmp_path / 'sg.db'}"))
    alerts: list[tuple[str, dict[str, object]]] = []

    async def alert(key: str, /, **params: object) -> None:
        alerts.append((key, params))

    sg.alerts.alert = alert  # type: ignore[method-assign]
    stuck = StuckRoom("!r:x", "$e", "m.room.member", "UNAVAILABLE", 0.0, 3)
    sg.dispatcher.stuck_rooms = lambda: [stuck]  # type: ignore[method-assign]
    try:
        assert sg._report() == {
            "stuck_rooms": [
                {
                    "room_id": "!r:x",
                    "event_id": "$e",
                    "event_type": "m.room.member",
                    "error_kind": "UNAVAILABLE",
                    "since": 0.0,
                    "retries": 3,
                }
            ]
        }
        await sg._room_stuck("!r:x", "m.room.member", "UNAVAILABLE", 0.0)
        assert alerts == [
            (
                "alert.room_stuck",
                {
                    "room": "!r:x",
                    "event_type": "m.room.member",
                    "error": "UNAVAILABLE",
                    "since": "1970-01-01 00:00 UTC",
                },
            )
        ]
        assert "bloqué" in sg.translator.bilingual("alert.room_stuck", "fr", **alerts[0][1])
    finally:
        await sg.session.close()
