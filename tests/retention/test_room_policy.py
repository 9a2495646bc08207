"""Every protected room carries an m.room.retention within bounds (real Synapse, both
databases): the room module sets it at creation, the gate refuses an out-of-bounds one
(Synapse would accept it), the enforcement user repairs a room without one, members are
told, `!sg retention` shows and changes it."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from bridge.devtools.client import MatrixError, SimpleClient
from bridge.devtools.people import practitioner
from bridge.devtools.stack import DevStack
from bridge.identity.model import Practitioner
from bridge.retention.config import RetentionConfig

pytestmark = pytest.mark.synapse

_n = itertools.count()
DAY = 86_400_000
DEFAULT_MS = RetentionConfig().bounds.default_max_ms
ENCRYPTED = [
    {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
]


def doctor() -> Practitioner:
    return practitioner(8888_00000 + next(_n), last="DURÉE", first="Anne", profession="10")


def uniq(name: str) -> str:
    return f"{name}ret{next(_n)}"


async def eventually(check: Any, timeout: float = 15) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.1)


async def retention_of(client: SimpleClient, room: str) -> dict[str, Any] | None:
    try:
        return dict(await client.request("GET", f"/rooms/{quote(room)}/state/m.room.retention"))
    except MatrixError as e:
        if e.status == 404:
            return None
        raise


def notice(sender: str, fragment: str) -> Any:
    def match(ev: dict[str, Any]) -> bool:
        content = ev.get("content", {})
        return (
            ev.get("sender") == sender
            and content.get("msgtype") == "m.notice"
            and fragment in content.get("body", "")
        )

    return match


async def audit_actions(stack: DevStack, room: str) -> list[str]:
    assert stack.santeguard is not None
    return [e.action for e in await stack.santeguard.audit.recent(200, room_id=room)]


async def protected_room(stack: DevStack, owner: SimpleClient) -> str:
    room = await owner.create_room(initial_state=ENCRYPTED)
    await eventually(lambda: _joined(owner, room, stack.enforcer_mxid))
    return room


async def _joined(client: SimpleClient, room: str, user: str) -> bool:
    return user in await client.joined_members(room)


async def test_new_room_is_born_with_the_network_retention(gated_stack: DevStack) -> None:
    _, doc = await gated_stack.practitioner(uniq("doc"), doctor())
    async with doc:
        room = await protected_room(gated_stack, doc)
        assert await retention_of(doc, room) == {"max_lifetime": DEFAULT_MS}


async def test_out_of_bounds_retention_refused_in_bounds_accepted_and_announced(
    gated_stack: DevStack,
) -> None:
    _, doc = await gated_stack.practitioner(uniq("doc"), doctor())
    async with doc:
        room = await protected_room(gated_stack, doc)
        path = f"/rooms/{quote(room)}/state/m.room.retention"
        for content in ({"max_lifetime": 10 * 365 * DAY}, {"max_lifetime": 1000}, {}):
            with pytest.raises(MatrixError) as err:
                await doc.request("PUT", path, content)
            assert err.value.status == 403, content
        assert "bornes du réseau" in str(err.value.error) or "max_lifetime" in str(err.value.error)
        with pytest.raises(MatrixError) as err:
            await doc.request("PUT", path, {"max_lifetime": 10 * 365 * DAY})
        assert "3650 jours sort des bornes du réseau (1 à 365 jours)" in str(err.value.error)
        assert "outside the network's bounds" in str(err.value.error)
        assert await retention_of(doc, room) == {"max_lifetime": DEFAULT_MS}
        # Creating a room with an out-of-bounds policy is refused too.
        with pytest.raises(MatrixError) as err:
            await doc.create_room(
                initial_state=[
                    *ENCRYPTED,
                    {"type": "m.room.retention", "state_key": "", "content": {"max_lifetime": 1}},
                ]
            )
        assert err.value.status == 403
        # Within the bounds: accepted, members told, audited.
        await doc.request("PUT", path, {"max_lifetime": 30 * DAY})
        await doc.wait_for_event(room, notice(gated_stack.enforcer_mxid, "30 jour(s)"))
        assert "retention.changed" in await eventually(lambda: audit_actions(gated_stack, room))
        assert "gate.refused.check_event_for_spam" in await audit_actions(gated_stack, room)


async def test_enforcer_gives_a_room_without_policy_the_default_and_tells_joiners(
    gated_stack: DevStack,
) -> None:
    """A room that predates SantéGuard has no policy: the sweep sets the default (or the
    enforcement user's own join, handled meanwhile by the dispatcher, already did)."""
    sg = gated_stack.santeguard
    assert sg is not None and sg.retention.policies is not None
    created = await sg.enforcer_matrix.bot.create_room(
        initial_state=[
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }
        ]
    )
    room = str(created)
    assert (await sg.retention.policies.current(room)).state == "missing"
    await sg.retention.policies.sweep()
    assert (await sg.retention.policies.current(room)).content == {"max_lifetime": DEFAULT_MS}
    assert "retention.set" in await eventually(lambda: audit_actions(gated_stack, room))
    nurse_user, nurse = await gated_stack.practitioner(uniq("nurse"), doctor())
    async with nurse:
        await sg.enforcer_matrix.invite(room, nurse_user.user_id)
        await nurse.join(room)
        welcome = await nurse.wait_for_event(room, notice(gated_stack.enforcer_mxid, "Bienvenue"))
        assert nurse_user.user_id in welcome["content"]["body"]
        assert "180 jour(s)" in welcome["content"]["body"]


async def test_retention_command_shows_and_changes_within_bounds(stack: DevStack) -> None:
    _, owner = await stack.user(uniq("owner"))
    member_user, member = await stack.user(uniq("member"))
    async with owner, member:
        room = await owner.create_room(invite=(stack.bot_mxid, member_user.user_id))
        await owner.wait_for_event(
            room,
            lambda ev: (
                ev.get("state_key") == stack.bot_mxid
                and ev.get("content", {}).get("membership") == "join"
            ),
        )
        await member.join(room)
        await owner.send_text(room, "!sg retention")
        shown = await owner.wait_for_event(room, notice(stack.bot_mxid, "Conservation"))
        assert "180 jour(s)" in shown["content"]["body"]
        assert "1 jour(s) à 1 an(s)" in shown["content"]["body"]
        await member.send_text(room, "!sg retention set 30j")
        await owner.wait_for_event(room, notice(stack.bot_mxid, "administrateurs du salon"))
        await owner.send_text(room, "!sg retention set 2a")
        await owner.wait_for_event(room, notice(stack.bot_mxid, "sort des bornes"))
        await owner.send_text(room, "!sg retention set 90 parsecs")
        await owner.wait_for_event(room, notice(stack.bot_mxid, "unité inconnue"))
        await owner.send_text(room, "!sg retention set 90 jours")
        await owner.wait_for_event(room, notice(stack.bot_mxid, "modifiée : 90 jour(s)"))
        assert await retention_of(owner, room) == {"max_lifetime": 90 * DAY}
        actions = await audit_actions(stack, room)
        assert "retention.set" in actions


async def test_synapse_is_told_the_same_bounds(gated_stack: DevStack) -> None:
    """The dev stack's homeserver clamps to SantéGuard's bounds (what the install guide
    asks), so Synapse's purge and the audit agree."""
    config = gated_stack.synapse.workdir / "homeserver.yaml"
    retention = yaml.safe_load(config.read_text())["retention"]
    bounds = RetentionConfig().bounds
    assert retention["enabled"] is True
    assert retention["allowed_lifetime_min"] == bounds.min_ms
    assert retention["allowed_lifetime_max"] == bounds.max_ms
    assert retention["purge_jobs"]
