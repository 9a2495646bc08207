"""The bot's device follows the database from one replica to another: real Synapse.

Replica A runs the device on directory X and receives a room key; it dies without a
final save. Replica B starts on an EMPTY directory Y with the same database: same device,
identity keys and token, and it decrypts what was sent before and after the switch. Then
B receives a room key while the database is down (its save before the next /sync fails,
so it never acknowledges that batch) and dies: replica C, on another empty directory,
still gets the key, because the homeserver delivers the unacknowledged batch again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from mautrix.util.async_db import Database

from bridge.core.errors import TransientError
from bridge.devtools.nio_peer import NioPeer
from bridge.devtools.stack import DevStack
from bridge.e2ee.device import BotDevice, DeviceStoreDb, StoreFenced

pytestmark = pytest.mark.synapse


async def allow_all(user_id: str, room_id: str) -> bool:
    return True


class _FailingStore(DeviceStoreDb):
    """The database as seen by a replica: ``down`` makes every save fail."""

    def __init__(self, db: Database, as_token: str, replica_id: str) -> None:
        super().__init__(db, as_token, replica_id)
        self.down = False
        self.failed = asyncio.Event()

    async def checkpoint(self, store: Path) -> bool:
        if self.down:
            self.failed.set()
            raise ConnectionError("database unreachable")
        return await super().checkpoint(store)


async def _kill(device: BotDevice) -> None:
    """As a crash: the sync loop ends where it is, nothing more is saved."""
    await device._sync.stop()
    await device._close_client()


async def _read(device: BotDevice, event: dict[str, Any], timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            clear = await device.decrypt(event)
        except TransientError:
            if time.monotonic() > deadline:
                raise
            continue
        assert clear is not None
        return str(clear["content"]["body"])


@pytest.fixture
async def alice(stack: DevStack, tmp_path: Path) -> AsyncIterator[NioPeer]:
    user = await stack.synapse.register_user(f"alice{time.monotonic_ns()}")
    peer = NioPeer(
        stack.synapse.base_url, user.user_id, user.device_id, user.access_token, tmp_path / "al"
    )
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
async def test_the_device_follows_the_database_to_empty_directories(
    stack: DevStack, db: Database, alice: NioPeer, tmp_path: Path
) -> None:
    hs = stack.synapse
    bot = await hs.register_appservice_user(
        stack.as_token, f"{stack.sender_localpart}_e2eestore{time.monotonic_ns()}"
    )
    room = await alice.create_encrypted_room(invite=(bot,))
    await hs.request(
        "POST",
        f"/_matrix/client/v3/rooms/{quote(room)}/join?user_id={quote(bot)}",
        token=stack.as_token,
        json={},
    )
    await alice.wait_for_member(room, bot)

    async def event(body: str) -> dict[str, Any]:
        event_id = await alice.send_text(room, body)
        _, raw = await hs.request(
            "GET",
            f"/_matrix/client/v3/rooms/{quote(room)}/event/{quote(event_id)}",
            token=alice.client.access_token,
        )
        assert raw["type"] == "m.room.encrypted"
        return dict(raw)

    async with aiohttp.ClientSession() as session:

        def replica(name: str, sync_timeout_ms: int) -> tuple[BotDevice, _FailingStore]:
            # Each replica its own long-poll timeout: Synapse answers a request identical
            # to a recent one from its cache, which would hide what it deleted since.
            store = _FailingStore(db, stack.as_token, f"replica-{name}")
            device = BotDevice(
                homeserver=hs.base_url,
                user_id=bot,
                as_token=stack.as_token,
                session=session,
                store_path=tmp_path / name,
                device_allowed=allow_all,
                key_wait_seconds=1.0,
                sync_timeout_ms=sync_timeout_ms,
                store_db=store,
            )
            return device, store

        # Replica A: a new device, which gets the room key of the first message.
        a, store_a = replica("a", 5_000)
        await a.start()
        device_id, keys = a.device_id, a.identity_keys
        first = await event("avant la bascule")
        assert await _read(a, first) == "avant la bascule"
        await _kill(a)

        # Replica B, empty directory: the same device, from the database only.
        b, store_b = replica("b", 4_000)
        assert not (tmp_path / "b").exists()
        await b.start()
        try:
            assert (b.device_id, b.identity_keys) == (device_id, keys)
            assert await b.whoami_device() == device_id
            assert await _read(b, first) == "avant la bascule"
            second = await event("après la bascule")
            assert await _read(b, second) == "après la bascule"
            # A, had it survived, could not save over B (B's takeover fenced it).
            with pytest.raises(StoreFenced):
                await store_a.checkpoint(tmp_path / "a")

            # B gets a new room key while it cannot save, then dies.
            store_b.down = True
            alice.client.olm.rotate_outbound_group_session(room)
            third = await event("base indisponible")
            assert await _read(b, third) == "base indisponible"
            # Its loop tries to save (and retries) before any new request: give a request,
            # had one been sent, the time to reach Synapse (which then drops the key).
            await asyncio.wait_for(store_b.failed.wait(), 10)
            await asyncio.sleep(1.0)
        finally:
            await _kill(b)

        # Replica C, empty directory: the key B never saved is delivered again.
        c, _ = replica("c", 3_000)
        c.key_wait_seconds = 10.0  # one attempt, which waits: the bot asks nobody for keys
        await c.start()
        try:
            assert c.device_id == device_id
            # (Not always in the very first sync: Synapse may answer it from its cache of
            # B's identical first request; the next one carries the unacknowledged batch.)
            assert await _read(c, third, timeout=0) == "base indisponible"
            assert await _read(c, first) == "avant la bascule"
            found = await hs.request(
                "POST",
                "/_matrix/client/v3/keys/query",
                token=alice.client.access_token,
                json={"device_keys": {bot: []}},
            )
            assert set(found[1]["device_keys"][bot]) == {device_id}  # one device, ever
        finally:
            await c.stop()
    assert (await db.fetchval("SELECT saved_by FROM e2ee_store")) == "replica-c"
