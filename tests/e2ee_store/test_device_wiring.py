"""``BotDevice`` and its sync loop with a stored device: the save comes before each /sync
request, a fenced device stops syncing, a device that does not open is never replaced."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from mautrix.util.async_db import Database
from nio import AsyncClient

from bridge.e2ee.device import BotDevice, DeviceStoreDb, StoreError, StoreFenced
from bridge.e2ee.device.sync import DeviceSync


class _Client:
    """What the loop uses of nio's client; every call is logged in ``calls``."""

    should_upload_keys = should_query_keys = should_claim_keys = False

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    async def sync(self, **_: Any) -> object:
        self.calls.append("sync")
        await asyncio.sleep(0.01)
        return object()

    async def send_to_device_messages(self) -> None:
        self.calls.append("to-device")


async def _run(tmp_path: Path, save: Any, until: int) -> tuple[DeviceSync, list[str]]:
    calls: list[str] = []
    sync = DeviceSync(tmp_path, 1000, before_sync=lambda: save(calls))
    client = cast(AsyncClient, _Client(calls))
    await sync.once(client, 0)
    sync.run(client)
    for _ in range(500):
        if len(calls) >= until or sync._task is None or sync._task.done():
            break
        await asyncio.sleep(0.01)
    return sync, calls


async def test_every_request_follows_a_save(tmp_path: Path) -> None:
    async def save(calls: list[str]) -> None:
        calls.append("save")

    sync, calls = await _run(tmp_path, save, 12)
    await sync.stop()
    requests = [i for i, c in enumerate(calls) if c == "sync"]
    assert len(requests) >= 3
    assert all(calls[i - 1] == "save" for i in requests)


async def test_a_failed_save_sends_no_request(tmp_path: Path) -> None:
    failures = 0

    async def save(calls: list[str]) -> None:
        nonlocal failures
        calls.append("save")
        if calls.count("sync") == 1:  # the database is down after the first sync
            failures += 1
            raise ConnectionError("database down")

    sync, calls = await _run(tmp_path, save, 3)  # first sync, then retried saves
    await asyncio.sleep(1.0)  # 0.5 s backoff: a retry or two
    await sync.stop()
    assert failures >= 2
    assert calls.count("sync") == 1


async def test_a_fenced_device_stops_syncing(tmp_path: Path) -> None:
    async def save(calls: list[str]) -> None:
        calls.append("save")
        if calls.count("sync") == 2:
            raise StoreFenced("taken over by replica-b")

    sync, calls = await _run(tmp_path, save, 100)
    assert sync._task is not None and sync._task.done()
    assert not sync.ready
    assert calls.count("sync") == 2 and calls[-1] == "save"
    await sync.stop()


async def test_a_stored_device_that_does_not_open_is_never_replaced(
    db: Database, tmp_path: Path
) -> None:
    other = DeviceStoreDb(db, "the-previous-as-token", "replica-a")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "device.json").write_text('{"device_id": "DEV"}')
    await other.restore(tmp_path / "old")
    await other.checkpoint(tmp_path / "old")
    store = tmp_path / "new"
    async with aiohttp.ClientSession() as session:
        device = BotDevice(
            homeserver="http://127.0.0.1:9",  # never reached: no login, no new device
            user_id="@bot:test",
            as_token="the-new-as-token",
            session=session,
            store_path=store,
            device_allowed=allow_all,
            store_db=DeviceStoreDb(db, "the-new-as-token", "replica-b"),
        )
        with pytest.raises(StoreError, match="the as_token changed"):
            await device.start()
        assert not device.ready and device.device_id is None
        assert list(store.iterdir()) == []
        await device.stop()  # nothing to save: the stored device is left as it was
    assert (await db.fetchval("SELECT saved_by FROM e2ee_store")) == "replica-a"


async def allow_all(user_id: str, room_id: str) -> bool:
    return True
