"""Every restricted command, typed by someone without the right, is refused and audited.

Against a real Synapse (the ``stack`` fixture, open network: both users are unverified).
The commands come from the running bot's registry, which knows each one's permission, so
a command added later is covered: a plain member (power 0, unverified) gets a refusal
for every command above ``anyone``; the room's creator (power 100, unverified, not a
network admin) for every ``network_admin`` one. Each refusal is in French (the default),
audited as ``bot.command_refused`` with outcome ``denied``, and has no effect (the
handler never ran: no ``bot.command`` entry). One room, one loop over the commands.
tests/test_integration_bot.py checks one refusal; tests/bot/ the permission matrix.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from bot.commands import Permission
from bridge.devtools.client import SimpleClient
from bridge.devtools.stack import DevStack

pytestmark = pytest.mark.synapse

# Commands anyone may run, by design (reading, help, their own verification state). A
# new command that anyone may run must be added here knowingly.
OPEN_BY_DESIGN = frozenset(
    {"annuaire", "encryption", "help", "ping", "retention", "status", "whois"}
)
# ``anyone`` commands whose changing actions check the right themselves.
GUARDED_ACTIONS = {"retention": "retention set 90d"}


def _joined(stack: DevStack) -> Any:
    return lambda ev: (
        ev.get("type") == "m.room.member"
        and ev.get("state_key") == stack.bot_mxid
        and ev.get("content", {}).get("membership") == "join"
    )


async def _wait_audited(
    stack: DevStack, event_ids: set[str], timeout: float = 30
) -> dict[str, Any]:
    """The audit entries of ``event_ids`` (commands are audited by event ID), once all are."""
    assert stack.santeguard is not None
    deadline = time.monotonic() + timeout
    while True:
        found = {
            e.subject: e
            for e in await stack.santeguard.audit.recent(500)
            if e.subject in event_ids and e.action.startswith("bot.command")
        }
        if set(found) == event_ids or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


async def test_restricted_commands_are_refused_to_members_and_room_admins(
    stack: DevStack,
) -> None:
    sg = stack.santeguard
    assert sg is not None
    prefix = sg.config.bot.prefix
    commands = list(sg.commands.registry)
    restricted = [c.spec for c in commands if c.spec.permission is not Permission.ANYONE]
    assert {c.spec.name for c in commands if c.spec.permission is Permission.ANYONE} == (
        OPEN_BY_DESIGN
    ), "a new command anyone may run: add it to OPEN_BY_DESIGN if that is intended"
    assert restricted, "the registry has no restricted command?"

    n = time.monotonic_ns()
    owner_user, owner = await stack.user(f"secowner{n}")
    member_user, member = await stack.user(f"secmember{n}")
    async with owner, member:
        room = await owner.create_room(invite=(stack.bot_mxid, member_user.user_id))
        await member.join(room)
        await owner.wait_for_recent(room, _joined(stack))

        sent: dict[str, tuple[SimpleClient, str, str]] = {}  # event -> who, command, typed
        for spec in restricted:
            typed = f"{prefix} {spec.name}"
            event = await member.send_text(room, typed)
            sent[event] = (member, spec.name, typed)
            if spec.permission is Permission.NETWORK_ADMIN:  # room power is not enough
                event = await owner.send_text(room, typed)
                sent[event] = (owner, spec.name, typed)
        for name, action in GUARDED_ACTIONS.items():
            event = await member.send_text(room, f"{prefix} {action}")
            sent[event] = (member, name, f"{prefix} {action}")

        audited = await _wait_audited(stack, set(sent))
        assert set(audited) == set(sent), "some commands were not audited"
        for event, entry in audited.items():
            who, name, _ = sent[event]
            assert entry.actor == who.user_id, name
            assert entry.action == "bot.command_refused", (name, entry.action)
            assert entry.details["command"] == name
            expected = "refused" if name in GUARDED_ACTIONS else "denied"
            assert entry.details["outcome"] == expected, (name, entry.details)

        # One French refusal per denied command, naming it.
        notices = [
            ev["content"]["body"]
            for ev in await owner.recent_events(room, limit=200)
            if ev.get("sender") == stack.bot_mxid
            and ev.get("content", {}).get("msgtype") == "m.notice"
        ]
        denied = [b for b in notices if b.startswith("Permission refusée")]
        assert len(denied) == len(sent) - len(GUARDED_ACTIONS), denied
        for _, name, typed in sent.values():
            if name not in GUARDED_ACTIONS:
                assert any(f"`{typed}`" in b for b in denied), typed

    # No effect: nothing ran for these users, the room's language did not change.
    ran = [
        e
        for e in await sg.audit.recent(500, room_id=room)
        if e.action == "bot.command" and e.actor in (owner_user.user_id, member_user.user_id)
    ]
    assert ran == []
    assert await sg.rooms.language(room) is None
