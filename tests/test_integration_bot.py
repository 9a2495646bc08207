"""End to end against a real Synapse: the bot joins on invite and answers commands."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bridge.devtools.client import MatrixError
from bridge.devtools.stack import DevStack

pytestmark = pytest.mark.synapse


def _bot_joined(stack: DevStack) -> Any:
    def match(ev: dict[str, Any]) -> bool:
        return (
            ev.get("type") == "m.room.member"
            and ev.get("state_key") == stack.bot_mxid
            and ev.get("content", {}).get("membership") == "join"
        )

    return match


def _notice_from(bot: str, fragment: str = "") -> Any:
    def match(ev: dict[str, Any]) -> bool:
        content = ev.get("content", {})
        return (
            ev.get("sender") == bot
            and content.get("msgtype") == "m.notice"
            and fragment in content.get("body", "")
        )

    return match


async def test_bot_joins_and_answers_ping_and_status(stack: DevStack) -> None:
    _, alice = await stack.user(f"alice{time.monotonic_ns()}")
    async with alice:
        room = await alice.create_room(invite=(stack.bot_mxid,), name="Concertation")
        await alice.wait_for_event(room, _bot_joined(stack))
        await alice.send_text(room, "!sg ping")
        pong = await alice.wait_for_event(room, _notice_from(stack.bot_mxid, "ms"))
        assert pong["content"]["body"].lower().startswith("pong")
        await alice.send_text(room, "!sg status")
        status = await alice.wait_for_event(room, _notice_from(stack.bot_mxid, "0.1.0"))
        assert "Salons" in status["content"]["body"] or "salons" in status["content"]["body"]
        assert status["content"].get("m.mentions") == {}


async def test_help_in_english_after_language_switch(stack: DevStack) -> None:
    _, bob = await stack.user(f"bob{time.monotonic_ns()}")
    async with bob:
        room = await bob.create_room(invite=(stack.bot_mxid,))
        await bob.wait_for_event(room, _bot_joined(stack))
        await bob.send_text(room, "!sg help")
        fr = await bob.wait_for_event(room, _notice_from(stack.bot_mxid, "ping"))
        await bob.send_text(room, "!sg language en")  # bob created the room: room admin
        await bob.wait_for_event(room, _notice_from(stack.bot_mxid, "English"))
        await bob.send_text(room, "!sg help")
        en = await bob.wait_for_event(room, _notice_from(stack.bot_mxid, "ping"))
        assert fr["content"]["body"] != en["content"]["body"]


async def test_permission_denied_for_plain_member(stack: DevStack) -> None:
    _, carol = await stack.user(f"carol{time.monotonic_ns()}")
    dave_user, dave = await stack.user(f"dave{time.monotonic_ns()}")
    async with carol, dave:
        room = await carol.create_room(invite=(stack.bot_mxid, dave_user.user_id))
        await dave.join(room)
        await carol.wait_for_event(room, _bot_joined(stack))
        await dave.send_text(room, "!sg language en")
        denied = await dave.wait_for_event(room, _notice_from(stack.bot_mxid, "Permission"))
        assert "!sg language" in denied["content"]["body"]
        assert stack.santeguard is not None
        assert await stack.santeguard.rooms.language(room) is None


async def test_replayed_command_is_not_answered_twice(stack: DevStack) -> None:
    _, erin = await stack.user(f"erin{time.monotonic_ns()}")
    async with erin:
        room = await erin.create_room(invite=(stack.bot_mxid,))
        await erin.wait_for_event(room, _bot_joined(stack))
        event_id = await erin.send_text(room, "!sg ping")
        await erin.wait_for_event(room, _notice_from(stack.bot_mxid, "ms"))
        sg = stack.santeguard
        assert sg is not None and sg.dispatcher is not None
        # Re-deliver the same event in a new transaction (as after a homeserver hiccup).
        body = await erin.request("GET", f"/rooms/{room}/event/{event_id}")
        seq = await sg.queue.store_transaction("replay-" + event_id, b'{"events": []}', 1)
        assert seq is not None
        sg.dispatcher.submit(seq, [body])
        await sg.dispatcher.wait_idle()
        await erin.send_text(room, "marker")
        data = await erin.request("GET", f"/rooms/{room}/messages?dir=b&limit=20")
        pongs = [
            e
            for e in data["chunk"]
            if e.get("sender") == stack.bot_mxid
            and e.get("content", {}).get("body", "").lower().startswith("pong")
        ]
        assert len(pongs) == 1


async def test_users_endpoint_and_appservice_ping(stack: DevStack) -> None:
    # Synapse asks the appservice about users in its namespace; the bot exists.
    token = await stack.synapse.admin_token()
    status, body = await stack.synapse.request(
        "POST", "/_matrix/client/v1/appservice/santeguard/ping", token=stack.as_token, json={}
    )
    assert status == 200 and "duration_ms" in body
    with pytest.raises(MatrixError):
        _, frank = await stack.user(f"frank{time.monotonic_ns()}")
        async with frank:
            await frank.request("GET", f"/profile/@santeguard_ghost:{stack.server_name}")
    assert token
