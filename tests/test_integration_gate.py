"""The synchronous gate and its backstop, against a real Synapse (both databases)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from bridge.devtools.client import MatrixError, SimpleClient
from bridge.devtools.people import practitioner
from bridge.devtools.stack import DevStack
from bridge.identity.model import Practitioner

pytestmark = pytest.mark.synapse

_n = itertools.count()
ENCRYPTED = [
    {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
]


def doctor(last: str = "EXEMPLE", first: str = "Julien", profession: str = "10") -> Practitioner:
    return practitioner(9999_00000 + next(_n), last=last, first=first, profession=profession)


def uniq(name: str) -> str:
    return f"{name}{next(_n)}"


async def wait_until(predicate: Any, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("condition not met")


async def protected_room(stack: DevStack, owner: SimpleClient, **kw: Any) -> str:
    room = await owner.create_room(initial_state=ENCRYPTED, **kw)
    await wait_until(lambda: _joined(owner, room, stack.enforcer_mxid))
    return room


async def _joined(client: SimpleClient, room: str, user: str) -> bool:
    return user in await client.joined_members(room)


async def test_unverified_user_cannot_create_rooms(gated_stack: DevStack) -> None:
    _, anon = await gated_stack.user(uniq("anon"))
    async with anon:
        with pytest.raises(MatrixError) as err:
            await anon.create_room(initial_state=ENCRYPTED)
    assert err.value.status == 403
    assert "professionnels de santé vérifiés" in str(err.value.error)
    assert "verified health professionals" in str(err.value.error)


async def test_clear_room_refused_encrypted_room_gets_the_enforcer_not_the_bot(
    gated_stack: DevStack,
) -> None:
    _, doc = await gated_stack.practitioner(uniq("doc"), doctor())
    async with doc:
        with pytest.raises(MatrixError) as err:
            await doc.create_room(name="en clair")
        assert err.value.status == 403 and "chiffrés de bout en bout" in str(err.value.error)
        room = await protected_room(gated_stack, doc)
        levels = await doc.request("GET", f"/rooms/{room}/state/m.room.power_levels")
        assert levels["users"][gated_stack.enforcer_mxid] == 100
        # Least privilege: the bot (which has an E2EE device) was not put in the room.
        assert gated_stack.bot_mxid not in await doc.joined_members(room)
        assert gated_stack.bot_mxid not in levels["users"]


async def test_invites_and_joins_are_gated(gated_stack: DevStack) -> None:
    _, doc = await gated_stack.practitioner(uniq("doc"), doctor())
    nurse_user, nurse = await gated_stack.practitioner(
        uniq("ide"), doctor("INFIRMIERE", "Claire", profession="60")
    )
    anon_user, anon = await gated_stack.user(uniq("anon"))
    async with doc, nurse, anon:
        room = await protected_room(gated_stack, doc, preset="public_chat")
        with pytest.raises(MatrixError) as err:
            await doc.invite(room, anon_user.user_id)
        assert err.value.status == 403
        assert f"{anon_user.user_id} n'est pas un professionnel de santé vérifié" in str(
            err.value.error
        )
        with pytest.raises(MatrixError) as err:
            await anon.join(room)  # public room: the join itself is refused
        assert err.value.status == 403
        await doc.invite(room, nurse_user.user_id)
        await nurse.join(room)
        assert nurse_user.user_id in await doc.joined_members(room)
        assert anon_user.user_id not in await doc.joined_members(room)
        with pytest.raises(MatrixError) as err:
            await doc.invite(room, "@someone:elsewhere.example")
        assert "ne fait pas partie du réseau de santé" in str(err.value.error)
    sg = gated_stack.santeguard
    assert sg is not None
    refusals = [e for e in await sg.audit.recent(50, room_id=room) if "refused" in e.action]
    assert {e.subject for e in refusals} >= {anon_user.user_id, "@someone:elsewhere.example"}


async def test_clear_message_refused_in_protected_room(gated_stack: DevStack) -> None:
    _, doc = await gated_stack.practitioner(uniq("doc"), doctor())
    async with doc:
        room = await protected_room(gated_stack, doc)
        with pytest.raises(MatrixError) as err:
            await doc.send_text(room, "Patient X, résultats en clair")
        assert err.value.status == 403
        assert "chiffrés de bout en bout" in str(err.value.error)


async def test_profession_rule_enforced_and_applied_to_members(gated_stack: DevStack) -> None:
    from bridge.gate.policy import RoomPolicy

    _, doc = await gated_stack.practitioner(uniq("doc"), doctor())
    nurse_user, nurse = await gated_stack.practitioner(
        uniq("ide"), doctor("INFIRMIER", "Paul", profession="60")
    )
    other_user, other = await gated_stack.practitioner(uniq("doc"), doctor("AUTRE", "Marc"))
    late_user, _ = await gated_stack.practitioner(uniq("doc"), doctor("TARD", "Léon"))
    sg = gated_stack.santeguard
    assert sg is not None and sg.gatekeeper is not None
    async with doc, nurse, other:
        room = await protected_room(gated_stack, doc)
        await doc.invite(room, other_user.user_id)
        await other.join(room)
        await wait_until(lambda: _member_known(gated_stack, room, other_user.user_id))
        # Physicians and nurses (10, 60) → nurses only (60): the physician member is
        # removed at once, a physician invite is refused, a nurse invite passes.
        new = RoomPolicy(professions=frozenset({"60"}))
        removed: list[str] = []

        async def plan(conn: Any) -> None:
            removed.extend(await sg.enforcer.plan_room(conn, room, new, trigger="test"))

        await sg.room_policies.set_room(room, new, "test", then=plan)
        sg.enforcer.wake()
        assert other_user.user_id in removed
        await wait_until(lambda: _not_joined(doc, room, other_user.user_id))
        with pytest.raises(MatrixError) as err:
            await doc.invite(room, late_user.user_id)
        assert err.value.status == 403
        assert "réservé aux professions suivantes : Infirmier" in str(err.value.error)
        await doc.invite(room, nurse_user.user_id)
        await nurse.join(room)
        assert nurse_user.user_id in await doc.joined_members(room)


async def _member_known(stack: DevStack, room: str, user: str) -> bool:
    assert stack.santeguard is not None
    return user in await stack.santeguard.room_policies.members_of(room)


async def test_backstop_removes_member_that_got_past_the_gate(gated_stack: DevStack) -> None:
    """A join the gate should have refused (e.g. a fail-open gate during an outage) is
    delivered to the appservice: the backstop removes the member and says why."""
    import aiohttp

    _, doc = await gated_stack.practitioner(uniq("doc"), doctor())
    temp_user, temp = await gated_stack.practitioner(uniq("remplacant"), doctor("R", "Jean"))
    sg = gated_stack.santeguard
    assert sg is not None
    async with doc, temp:
        room = await protected_room(gated_stack, doc)
        await doc.invite(room, temp_user.user_id)
        await temp.join(room)
        await wait_until(lambda: _member_known(gated_stack, room, temp_user.user_id))
        join = await doc.request(
            "GET", f"/rooms/{room}/state/m.room.member/{temp_user.user_id}?format=event"
        )
        await sg.verifications.unbind(temp_user.user_id)  # no longer verified, still joined
        # Redeliver the join as the homeserver does when the gate let it through.
        async with (
            aiohttp.ClientSession() as http,
            http.put(
                f"{sg.config.appservice.address}/_matrix/app/v1/transactions/backstop-{next(_n)}",
                json={"events": [join]},
                headers={"Authorization": f"Bearer {gated_stack.hs_token}"},
            ) as resp,
        ):
            assert resp.status == 200
        await wait_until(lambda: _not_joined(doc, room, temp_user.user_id))
        kick = await doc.wait_for_recent(
            room,
            lambda ev: (
                ev.get("type") == "m.room.member"
                and ev.get("state_key") == temp_user.user_id
                and ev["content"].get("membership") == "leave"
            ),
        )
        assert kick["sender"] == gated_stack.enforcer_mxid
        assert "n'est pas un professionnel de santé vérifié" in kick["content"]["reason"]
        # The enforcement user has no device: its notice is clear, and holds no patient data.
        notice = await doc.wait_for_recent(
            room,
            lambda ev: (
                ev.get("sender") == gated_stack.enforcer_mxid
                and ev.get("type") == "m.room.message"
                and ev.get("origin_server_ts", 0) >= kick.get("origin_server_ts", 0)
            ),
        )
        assert notice["content"]["msgtype"] == "m.notice"
        assert temp_user.user_id in notice["content"]["body"]
    actions = [e.action for e in await sg.audit.recent(20, room_id=room)]
    assert "backstop.removed" in actions


async def _not_joined(client: SimpleClient, room: str, user: str) -> bool:
    return user not in await client.joined_members(room)


async def test_unverified_practitioner_removed_everywhere(gated_stack: DevStack) -> None:
    _, doc = await gated_stack.practitioner(uniq("doc"), doctor())
    leaver_user, leaver = await gated_stack.practitioner(uniq("doc"), doctor("PARTI", "Luc"))
    sg = gated_stack.santeguard
    assert sg is not None and sg.gatekeeper is not None
    async with doc, leaver:
        rooms = [await protected_room(gated_stack, doc) for _ in range(2)]
        for room in rooms:
            await doc.invite(room, leaver_user.user_id)
            await leaver.join(room)
            await wait_until(
                lambda room=room: _member_known(gated_stack, room, leaver_user.user_id)
            )
        removed: list[str] = []

        async def plan(conn: Any) -> None:
            removed.extend(
                await sg.enforcer.plan_unbound(conn, leaver_user.user_id, trigger="test")
            )

        await sg.verifications.unbind(leaver_user.user_id, then=plan)
        sg.enforcer.wake()
        assert sorted(removed) == sorted(rooms)
        for room in rooms:
            await wait_until(lambda room=room: _not_joined(doc, room, leaver_user.user_id))


async def test_admin_room_is_unprotected(gated_stack: DevStack) -> None:
    _, admin_client = await gated_stack.admin()
    sg = gated_stack.santeguard
    assert sg is not None
    async with admin_client as c:
        # Clear: an admin room. The bot joins because it is invited, and says what it is.
        room = await c.create_room(name="Administration SantéGuard", invite=(gated_stack.bot_mxid,))
        await wait_until(lambda: _joined(c, room, gated_stack.bot_mxid))
        await wait_until(lambda: _unprotected(gated_stack, room))
        hello = await c.wait_for_event(
            room,
            lambda ev: (
                ev.get("sender") == gated_stack.bot_mxid
                and "aucune donnée de patient" in ev.get("content", {}).get("body", "")
            ),
        )
        assert hello
        await c.send_text(room, "!sg ping")
        pong = await c.wait_for_event(
            room,
            lambda ev: (
                ev.get("sender") == gated_stack.bot_mxid
                and ev.get("content", {}).get("body", "").lower().startswith("pong")
            ),
        )
        assert pong


async def _unprotected(stack: DevStack, room: str) -> bool:
    assert stack.santeguard is not None and stack.santeguard.gatekeeper is not None
    return not stack.santeguard.gatekeeper.is_protected(room)


async def test_protecting_a_clear_room_encrypts_it_and_redacts_clear_leftovers(
    gated_stack: DevStack,
) -> None:
    """`!sg room protect on` in a clear room switches encryption on; a clear message that
    still reaches the appservice for a protected room is redacted and audited."""
    import aiohttp

    _, admin_client = await gated_stack.admin()
    sg = gated_stack.santeguard
    assert sg is not None and sg.gatekeeper is not None
    async with admin_client as c:
        room = await c.create_room(name="Salle de garde", invite=(gated_stack.bot_mxid,))
        await wait_until(lambda: _joined(c, room, gated_stack.bot_mxid))
        await wait_until(lambda: _unprotected(gated_stack, room))
        leftover = await c.send_text(room, "compte rendu envoyé en clair")
        await c.send_text(room, "!sg room protect on")
        await wait_until(lambda: _encrypted(c, room), timeout=15)
        event = await c.request("GET", f"/rooms/{room}/event/{leftover}")
        async with (
            aiohttp.ClientSession() as http,
            http.put(
                f"{sg.config.appservice.address}/_matrix/app/v1/transactions/leftover-{next(_n)}",
                json={"events": [event]},
                headers={"Authorization": f"Bearer {gated_stack.hs_token}"},
            ) as resp,
        ):
            assert resp.status == 200
        await wait_until(lambda: _redacted(c, room, leftover), timeout=15)
    await wait_until(lambda: _audited(sg, room, "backstop.redacted"))
    actions = [e.action for e in await sg.audit.recent(30, room_id=room)]
    assert "encryption.enabled" in actions and "backstop.redacted" in actions
    # The unverified admin cannot stay in a room that is now protected; as its creator
    # (room v12) it cannot be kicked, so the admins are alerted instead.
    assert "backstop.remove_failed" in actions


async def _audited(sg: Any, room: str, action: str) -> bool:
    return action in [e.action for e in await sg.audit.recent(30, room_id=room)]


async def _encrypted(client: SimpleClient, room: str) -> bool:
    try:
        state = await client.request("GET", f"/rooms/{room}/state/m.room.encryption")
    except MatrixError:
        return False
    return bool(state.get("algorithm") == "m.megolm.v1.aes-sha2")


async def _redacted(client: SimpleClient, room: str, event_id: str) -> bool:
    event = await client.request("GET", f"/rooms/{room}/event/{event_id}")
    return not event.get("content")


async def test_room_keys_follow_the_gate_policy(gated_stack: DevStack) -> None:
    """The bot's device shares a protected room's keys only with members the gate admits."""
    sg = gated_stack.santeguard
    assert sg is not None
    doc_user, doc = await gated_stack.practitioner(uniq("doc"), doctor())
    async with doc:
        room = await protected_room(gated_stack, doc)
        assert await sg.gatekeeper.admits(doc_user.user_id, room)
        assert not await sg.gatekeeper.admits("@intrus:santeguard.test", room)
        assert not await sg.gatekeeper.admits("@doc:elsewhere.example", room)
        await sg.verifications.unbind(doc_user.user_id)
        assert not await sg.gatekeeper.admits(doc_user.user_id, room)
