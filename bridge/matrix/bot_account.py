"""The bot's account: registered (and its device started) as soon as the homeserver lets us.

SantéGuard starts before the homeserver may be reachable; the registration is retried
in the background with capped backoff, then the ``after`` hooks run (the encrypted
device) and ``ready`` is set, which jobs that need the bot wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from bridge.matrix.client import MatrixClient

log = logging.getLogger("santeguard.matrix")


class BotAccount:
    def __init__(
        self, matrix: MatrixClient, *, after: Sequence[Callable[[], Awaitable[None]]] = ()
    ) -> None:
        self._matrix = matrix
        self._after = tuple(after)
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._register_forever(), name="santeguard-bot")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def user_query(self, user_id: str) -> bool:
        """The homeserver asks whether a user of our namespace exists: only the bot does."""
        if user_id != self._matrix.bot_mxid:
            return False
        await self._matrix.ensure_bot()
        return True

    async def _register_forever(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._matrix.ensure_bot()
                for hook in self._after:
                    await hook()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("Homeserver not ready for bot registration (%s); retrying", e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
                continue
            self.ready.set()
            log.info("Bot %s registered", self._matrix.bot_mxid)
            return
