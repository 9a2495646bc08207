"""Every decision type SantéGuard makes is in the audit log (issue 10, part 4).

One scenario on a real Synapse (both databases) produces the decisions a network sees
every day and checks each one's entry; the table below maps every decision type to its
audit actions and to the tests that prove each is recorded, and a static check keeps
that table true (the action is still emitted by the code, still asserted by the test).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest

from bridge.devtools.client import MatrixError
from bridge.devtools.people import practitioner
from bridge.devtools.stack import DevStack
from tests.retention.test_room_policy import eventually, protected_room

ROOT = Path(__file__).resolve().parent.parent
_n = itertools.count()

# Decision type → (audit actions, tests asserting them against real parts).
DECISIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "gate deny": (("gate.refused.",), ("tests/test_audit_decisions.py",)),
    "gate allow": (("member.admitted.",), ("tests/test_audit_decisions.py",)),
    "kick": (("backstop.removed",), ("tests/test_audit_decisions.py",)),
    "redaction": (("backstop.redacted",), ("tests/test_enforcement_rules.py",)),
    "encryption change": (("encryption.enabled",), ("tests/test_integration_gate.py",)),
    "binding": (
        ("identity.bound", "identity.unbound"),
        ("tests/test_integration_identity.py", "tests/test_enforcement_durable.py"),
    ),
    "retention change": (
        ("retention.set", "retention.changed"),
        ("tests/retention/test_room_policy.py",),
    ),
    "command run": (("bot.command",), ("tests/test_audit_decisions.py",)),
    "command refused": (("bot.command_refused",), ("tests/test_audit_decisions.py",)),
    "mail sent": (("mail.sent",), ("tests/mail/test_outbox_groups.py",)),
    "mail failed": (("mail.failed",), ("tests/mail/test_delivery.py",)),
}


def _source() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "bridge").rglob("*.py"))


@pytest.mark.parametrize("decision", sorted(DECISIONS))
def test_every_decision_type_is_recorded_and_tested(decision: str) -> None:
    actions, tests = DECISIONS[decision]
    source = _source()
    for action in actions:
        emitted = re.search(rf'["\']{re.escape(action)}', source) or (
            action.endswith(".") and f'f"{action}' in source
        )
        assert emitted, f"{decision}: nothing in bridge/ records {action!r} any more"
        assert any(action in (ROOT / t).read_text(encoding="utf-8") for t in tests), (
            f"{decision}: none of {tests} asserts {action!r}"
        )


async def _actions(stack: DevStack, room: str | None = None) -> list[tuple[str, Any]]:
    assert stack.santeguard is not None
    entries = await stack.santeguard.audit.recent(500, room_id=room)
    return [(e.action, e) for e in entries]


@pytest.mark.synapse
async def test_a_working_day_is_in_the_audit_log(gated_stack: DevStack) -> None:
    sg = gated_stack.santeguard
    assert sg is not None
    n = next(_n)
    _, doc = await gated_stack.practitioner(
        f"auddoc{n}", practitioner(7777_00000 + 2 * n, last="AUDIT", first="Doc")
    )
    nurse_user, nurse = await gated_stack.practitioner(
        f"audnurse{n}", practitioner(7777_00001 + 2 * n, last="AUDIT", first="Nurse")
    )
    anon_user, anon = await gated_stack.user(f"audanon{n}")
    async with doc, nurse, anon:
        room = await protected_room(gated_stack, doc)
        # Gate deny: an unverified account is refused before it reaches the room.
        with pytest.raises(MatrixError):
            await doc.invite(room, anon_user.user_id)
        # Gate allow: a verified nurse joins.
        await doc.invite(room, nurse_user.user_id)
        await nurse.join(room)

        async def admitted() -> bool:
            return nurse_user.user_id in await sg.room_policies.members_of(room)

        await eventually(admitted, timeout=30)
        # Kick: her verification is withdrawn; the enforcement user removes her.
        planned: list[str] = []

        async def plan(conn: Any) -> None:
            planned.extend(await sg.enforcer.plan_unbound(conn, nurse_user.user_id, trigger="t"))

        await sg.verifications.unbind(nurse_user.user_id, then=plan)
        sg.enforcer.wake()
        assert planned == [room]

        async def recorded() -> set[str]:
            found = {a for a, _ in await _actions(gated_stack, room)}
            wanted = {
                "gate.refused.user_may_invite",
                "member.admitted.join",
                "backstop.removed",
            }
            return found if wanted <= found else set()

        found = await eventually(recorded, timeout=30)
        assert "retention.set" not in found  # born with its policy: nothing to repair

        # Commands: one that runs, one refused (in the network admins' room).
        admin_user, admin = await gated_stack.admin()
        async with admin:
            admin_room = await admin.create_room(invite=(gated_stack.bot_mxid,))
            await admin.wait_for_event(
                admin_room,
                lambda ev: (
                    ev.get("state_key") == gated_stack.bot_mxid
                    and ev.get("content", {}).get("membership") == "join"
                ),
            )
            await admin.send_text(admin_room, "!sg ping")
            await admin.send_text(admin_room, "!sg retention set 10a")

            async def commands() -> list[Any]:
                entries = [
                    e for a, e in await _actions(gated_stack, admin_room) if a.startswith("bot.")
                ]
                return entries if len([e for e in entries if "command" in e.action]) >= 2 else []

            entries = await eventually(commands, timeout=30)
        by_action = {e.action: e for e in entries}
        assert by_action["bot.command"].details == {"command": "ping", "outcome": "done"}
        assert by_action["bot.command_refused"].details == {
            "command": "retention",
            "outcome": "refused",
        }
        assert by_action["bot.command"].subject and admin_user.user_id == (
            by_action["bot.command"].actor
        )
    # Nothing a person wrote is in the log: the refused command's argument is not kept.
    for _, entry in await _actions(gated_stack):
        assert "10a" not in str(entry.details)
