"""`!sg audit` in the admin room runs the purge-proof audit and answers with its verdict
(real Synapse; the bot's other rooms are protected practitioners' rooms, where the
command is refused: ``AuditCommands`` checks the room)."""

from __future__ import annotations

import pytest

from tests.retention.conftest import RetentionLab
from tests.retention.test_room_policy import notice

pytestmark = pytest.mark.synapse


def _bot_joined(bot: str):  # type: ignore[no-untyped-def]
    return lambda ev: (
        ev.get("state_key") == bot and ev.get("content", {}).get("membership") == "join"
    )


async def test_audit_command_answers_in_the_admin_room(retention_off: RetentionLab) -> None:
    stack = retention_off.stack
    await retention_off.set_enforcer_admin(True)
    _, admin = await stack.admin()
    async with admin:
        room = await admin.create_room(invite=(stack.bot_mxid,))
        await admin.wait_for_event(room, _bot_joined(stack.bot_mxid))
        await admin.send_text(room, "!sg audit")
        reply = await admin.wait_for_event(room, notice(stack.bot_mxid, "onservation"), 90)
        body = reply["content"]["body"]
        # Every verdict is one of the three, never a bare "OK".
        assert any(word in body for word in ("prouvée", "Infraction", "Impossible de prouver")), (
            body
        )
        assert stack.santeguard is not None
        actions = [e.action for e in await stack.santeguard.audit.recent(50)]
        assert "retention.audit" in actions
