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
        }
        # Least privilege: the enforcement user is not the bot (which has the device).
        assert sg.enforcer_matrix.bot_mxid != sg.matrix.bot_mxid
        assert sg.enforcer_matrix.encryptor is None
        assert sg.translator.has("gate.reason.not_verified")
        assert sg.translator.has("identity.verified") and sg.translator.has("encryption.header")
    finally:
        await sg.session.close()
