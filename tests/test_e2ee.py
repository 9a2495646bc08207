"""The bot as an encrypted member, end to end: real Synapse, practitioners on matrix-nio.

Practitioners create encrypted rooms; the bot decrypts their commands from the appservice
transactions and answers encrypted, with the room key shared only with allowed devices.
"""

from __future__ import annotations

import asyncio
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nio import MegolmEvent

from bridge.devtools.nio_peer import NioPeer, notice_from
from bridge.devtools.stack import DevStack
from bridge.e2ee.device import BotDevice

pytestmark = pytest.mark.synapse


def _crypto(stack: DevStack) -> BotDevice:
    assert stack.santeguard is not None and stack.santeguard.crypto is not None
    return stack.santeguard.crypto


async def _peer(stack: DevStack, name: str, tmp_path: Path) -> NioPeer:
    user = await stack.synapse.register_user(f"{name}{time.monotonic_ns()}")
    peer = NioPeer(
        stack.synapse.base_url, user.user_id, user.device_id, user.access_token, tmp_path / name
    )
    await peer.start()
    return peer


@pytest.fixture
async def alice(stack: DevStack, tmp_path: Path) -> AsyncIterator[NioPeer]:
    peer = await _peer(stack, "alice", tmp_path)
    try:
        yield peer
    finally:
        await peer.stop()


async def _room_with_bot(stack: DevStack, peer: NioPeer, *others: str) -> str:
    room = await peer.create_encrypted_room(invite=(stack.bot_mxid, *others))
    await peer.wait_for_member(room, stack.bot_mxid)
    return room


async def _ask(
    peer: NioPeer, room: str, command: str, bot: str, fragment: str = "", timeout: float = 20
) -> Any:
    since = peer.mark(room)
    await peer.send_text(room, command)
    return await peer.wait_for(room, notice_from(bot, fragment), since=since, timeout=timeout)


async def test_bot_decrypts_a_command_and_answers_encrypted(
    stack: DevStack, alice: NioPeer
) -> None:
    room = await _room_with_bot(stack, alice)
    pong = await _ask(alice, room, "!sg ping", stack.bot_mxid, "pong")
    assert pong.decrypted, "the reply to an encrypted room must be encrypted"
    assert pong.sender_key == _crypto(stack).identity_keys["curve25519"]
    # The wire form the homeserver stored is ciphertext, not the reply.
    raw = await _get(alice, f"/rooms/{room}/event/{pong.event_id}")
    assert raw["type"] == "m.room.encrypted"
    assert "pong" not in str(raw["content"])


async def test_every_command_works_in_an_encrypted_room(stack: DevStack, alice: NioPeer) -> None:
    bot = stack.bot_mxid
    room = await _room_with_bot(stack, alice)
    status = await _ask(alice, room, "!sg status", bot, "0.1.0")
    assert status.decrypted
    help_fr = await _ask(alice, room, "!sg help", bot, "!sg encryption")
    assert "!sg encryption" in help_fr.body
    report = await _ask(alice, room, "!sg chiffrement", bot, "m.megolm.v1.aes-sha2")
    assert _crypto(stack).device_id in report.body
    assert "oui" in report.body and "signé" in report.body
    await _ask(alice, room, "!sg language en", bot, "English")  # alice created the room
    report_en = await _ask(alice, room, "!sg encryption", bot, "End-to-end encrypted: yes")
    assert "could decrypt every message" in report_en.body
    unknown = await _ask(alice, room, "!sg pingg", bot, "ping")
    assert unknown.decrypted


async def test_encryption_command_in_a_clear_room(stack: DevStack) -> None:
    _, carol = await stack.user(f"carol{time.monotonic_ns()}")
    async with carol:
        room = await carol.create_room(invite=(stack.bot_mxid,))
        await carol.wait_for_event(
            room,
            lambda ev: (
                ev.get("type") == "m.room.member"
                and ev.get("state_key") == stack.bot_mxid
                and ev["content"].get("membership") == "join"
            ),
        )
        await carol.send_text(room, "!sg encryption")
        reply = await carol.wait_for_event(
            room,
            lambda ev: (
                ev.get("sender") == stack.bot_mxid
                and "non" in ev.get("content", {}).get("body", "")
            ),
        )
        assert reply["type"] == "m.room.message"  # a clear room gets a clear reply


async def allow_all(user_id: str, room_id: str) -> bool:
    """The test's own: SantéGuard has no allow-all policy (its device follows the gate)."""
    return True


async def test_refused_member_gets_no_room_key(
    stack: DevStack, alice: NioPeer, tmp_path: Path
) -> None:
    bot = stack.bot_mxid
    mallory = await _peer(stack, "mallory", tmp_path)
    crypto = _crypto(stack)

    async def not_mallory(user_id: str, room_id: str) -> bool:
        return user_id != mallory.user_id

    try:
        room = await _room_with_bot(stack, alice, mallory.user_id)
        await mallory.join(room)
        await alice.wait_for_member(room, mallory.user_id)
        crypto.device_allowed = not_mallory
        m_since = mallory.mark(room)
        pong = await _ask(alice, room, "!sg ping", bot, "pong")
        assert pong.decrypted
        # The bot's greeting on joining was shared while everyone was admitted: skip it.
        seen = await mallory.wait_for(
            room,
            lambda ev: ev.sender == bot and "SantéGuard" not in str(getattr(ev, "body", "")),
            since=m_since,
            timeout=20,
        )
        assert isinstance(seen, MegolmEvent), "a refused member decrypted the bot's reply"
        assert (
            mallory.client.olm.inbound_group_store.get(room, seen.sender_key, seen.session_id)
            is None
        )
        # Allowed again: the next reply uses a new session that reaches mallory too.
        crypto.device_allowed = allow_all
        m_since = mallory.mark(room)
        await _ask(alice, room, "!sg ping", bot, "pong")
        again = await mallory.wait_for(room, notice_from(bot, "pong"), since=m_since)
        assert again.decrypted
    finally:
        crypto.device_allowed = allow_all
        await mallory.stop()


async def test_undecryptable_message_is_reported_not_dropped(
    stack: DevStack, alice: NioPeer
) -> None:
    bot = stack.bot_mxid
    crypto = _crypto(stack)
    room = await _room_with_bot(stack, alice)
    await _ask(alice, room, "!sg ping", bot, "pong")  # alice knows the bot's device now
    bot_device = alice.client.device_store[bot][crypto.device_id]
    alice.client.blacklist_device(bot_device)  # alice's next room key skips the bot
    crypto.give_up_seconds = 2.0
    try:
        since = alice.mark(room)
        await alice.send_text(room, "!sg ping")
        notice = await alice.wait_for(room, notice_from(bot, "déchiffrer"), since=since, timeout=30)
        assert notice.decrypted
        assert alice.device_id in notice.body and alice.user_id in notice.body
    finally:
        crypto.give_up_seconds = 60.0
        alice.client.unblacklist_device(bot_device)
    report = await _ask(alice, room, "!sg encryption", bot, alice.device_id)
    assert "n'a pas pu déchiffrer" in report.body
    assert "1 message" in report.body


async def test_restart_keeps_the_same_device_and_identity(stack: DevStack, alice: NioPeer) -> None:
    bot = stack.bot_mxid
    room = await _room_with_bot(stack, alice)
    await _ask(alice, room, "!sg ping", bot, "pong")
    before = _crypto(stack)
    device_id, keys = before.device_id, before.identity_keys
    master_before = await _master_key(alice, bot)
    store = Path(stack.config().encryption.store_path)

    await stack.stop_santeguard()
    sg = await stack.start_santeguard()
    await asyncio.wait_for(sg.bot_ready.wait(), 60)

    after = _crypto(stack)
    assert after is not before
    assert after.device_id == device_id
    assert after.identity_keys == keys
    assert await after.whoami_device() == device_id
    assert await _master_key(alice, bot) == master_before
    # Still decrypts: the old inbound session was kept, and a new one works too.
    pong = await _ask(alice, room, "!sg ping", bot, "pong", timeout=30)
    assert pong.decrypted and pong.sender_key == keys["curve25519"]
    alice.client.olm.rotate_outbound_group_session(room)
    assert (await _ask(alice, room, "!sg ping", bot, "pong")).decrypted
    # Key material stays private: directory 0700, every file 0600.
    modes = _modes(store)
    assert modes.pop(".") == 0o700
    assert modes and all(mode == 0o600 for mode in modes.values()), modes
    # One device only, still signed by the (unchanged) self-signing key.
    found = await _keys_query(alice, bot)
    assert set(found["device_keys"][bot]) == {device_id}
    ssk = next(iter(found["self_signing_keys"][bot]["keys"]))
    assert ssk in found["device_keys"][bot][device_id]["signatures"][bot]


def _modes(store: Path) -> dict[str, int]:
    modes = {".": stat.S_IMODE(store.stat().st_mode)}
    modes.update({p.name: stat.S_IMODE(p.stat().st_mode) for p in store.iterdir() if p.is_file()})
    return modes


async def _master_key(peer: NioPeer, user_id: str) -> dict[str, Any]:
    body = await _keys_query(peer, user_id)
    master: dict[str, Any] = body["master_keys"][user_id]["keys"]
    return master


async def _keys_query(peer: NioPeer, user_id: str) -> dict[str, Any]:
    return await _get(peer, "/keys/query", {"device_keys": {user_id: []}})


async def _get(peer: NioPeer, path: str, post: dict[str, Any] | None = None) -> dict[str, Any]:
    """A raw client-server call with the peer's token (nio would decrypt what it gets)."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            "POST" if post is not None else "GET",
            f"{peer.client.homeserver}/_matrix/client/v3{path}",
            json=post,
            headers={"Authorization": f"Bearer {peer.client.access_token}"},
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body
