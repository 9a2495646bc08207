"""What the built-in `status` command reports, gathered from the parts that know it.

The command framework asks a ``BotServices``-shaped object; this is it, so that the
application class does not have to be one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

Count = Callable[[], Awaitable[int]]
SetLanguage = Callable[[str, str], Awaitable[None]]


class Status:
    def __init__(
        self,
        version: str,
        *,
        queue_depth: Count,
        rooms_watched: Count,
        set_room_language: SetLanguage,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._version = version
        self._queue_depth = queue_depth
        self._rooms_watched = rooms_watched
        self._set_room_language = set_room_language
        self._clock = clock
        self._started = clock()

    @property
    def version(self) -> str:
        return self._version

    def uptime_seconds(self) -> float:
        return self._clock() - self._started

    async def queue_depth(self) -> int:
        return await self._queue_depth()

    async def rooms_watched(self) -> int:
        return await self._rooms_watched()

    async def set_room_language(self, room_id: str, lang: str) -> None:
        await self._set_room_language(room_id, lang)
