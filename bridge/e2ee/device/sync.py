"""The device's own ``/sync`` loop: to-device room keys, key top-ups, device lists.

Room events come through the durable appservice transactions; this loop only keeps the
crypto state a real client keeps. Every completed sync is a pulse that waiters (a
decryption waiting for its room key, a send waiting for nio to know the room) await.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nio import AsyncClient, KeysQueryError, SyncError

from bridge.core.errors import TransientError
from bridge.e2ee.device.dbstore import StoreFenced
from bridge.e2ee.files import restrict_tree

log = logging.getLogger("santeguard.crypto")

_FIRST_RETRY_SECONDS = 0.5
_MAX_RETRY_SECONDS = 30.0


def sync_filter() -> dict[str, Any]:
    """Only what crypto state needs: membership and encryption state, no messages.

    Messages come through the appservice transactions; leaving them out here keeps the
    sync small and stops nio from consuming keys or key requests on its own.
    """
    return {
        "presence": {"types": []},
        "account_data": {"types": []},
        "room": {
            "timeline": {
                "limit": 50,
                "not_types": ["m.room.message", "m.room.encrypted", "m.reaction", "m.sticker"],
            },
            "ephemeral": {"types": []},
            "account_data": {"types": []},
        },
    }


class DeviceSync:
    """The sync loop, the device's readiness, and the lock on its key traffic.

    ``keys_lock`` serialises key uploads, queries and claims between the loop, decryption
    and sending: nio tracks one request of each kind at a time.
    """

    def __init__(
        self,
        store: Path,
        timeout_ms: int,
        before_sync: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._store = store
        self._timeout_ms = timeout_ms
        self._before_sync = before_sync
        self.keys_lock = asyncio.Lock()
        self._client: AsyncClient | None = None
        self._ready = asyncio.Event()
        self._synced = asyncio.Event()  # replaced after every sync: a pulse for waiters
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def run(self, client: AsyncClient) -> None:
        """Sync in the background; from now on the device serves decryption and sending."""
        self._client = client
        self._task = asyncio.create_task(self._forever(client), name="santeguard-e2ee-sync")
        self._ready.set()

    async def stop(self) -> None:
        self._ready.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._client = None

    async def wait_ready(self, timeout: float) -> AsyncClient:
        """The running client; ``TransientError`` (retry later) if it does not come soon."""
        if not self._ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), max(timeout, 0.1))
        if not self._ready.is_set() or self._client is None:
            raise TransientError("the bot's encrypted device is not ready yet")
        return self._client

    async def once(self, client: AsyncClient, timeout_ms: int, *, full_state: bool = False) -> None:
        """One sync, then the to-device messages and key traffic it calls for.

        ``before_sync`` (the database save) runs first: a request with the last batch's
        token tells the homeserver that batch arrived (it deletes its to-device messages),
        so what the batch changed must be saved before; if the save fails, no request.
        """
        if self._before_sync is not None:
            await self._before_sync()
        resp = await client.sync(
            timeout=timeout_ms, sync_filter=sync_filter(), full_state=full_state or None
        )
        if isinstance(resp, SyncError):
            raise TransientError(f"sync failed: {resp.status_code}")
        await client.send_to_device_messages()
        async with self.keys_lock:
            if client.should_upload_keys:
                await client.keys_upload()
            if client.should_query_keys:
                await client.keys_query()
            if client.should_claim_keys:
                await client.keys_claim(client.get_users_for_key_claiming())
        restrict_tree(self._store)
        pulse, self._synced = self._synced, asyncio.Event()
        pulse.set()

    async def next_sync(self, timeout: float) -> None:
        """Wait for the next completed sync, or ``timeout`` seconds, whichever is first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), max(timeout, 0.0))

    async def query_keys(self, client: AsyncClient) -> None:
        """Fetch the device lists nio marked outdated, now rather than at the next sync."""
        async with self.keys_lock:
            if client.should_query_keys:
                resp = await client.keys_query()
                if isinstance(resp, KeysQueryError):
                    raise TransientError(f"key query failed: {resp.status_code}")

    async def _forever(self, client: AsyncClient) -> None:
        delay = _FIRST_RETRY_SECONDS
        while True:
            try:
                await self.once(client, self._timeout_ms)
                delay = _FIRST_RETRY_SECONDS
            except asyncio.CancelledError:
                raise
            except StoreFenced as e:
                self._ready.clear()
                log.critical("Encrypted device stopped: %s", e)
                return
            except Exception as e:
                log.warning("Encrypted device sync failed (%s); retrying in %.1f s", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY_SECONDS)
