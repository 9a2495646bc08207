"""Real bot objects wired together, with a fake `BotServices` and a recording room."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from bot.builtin import BuiltinCommands
from bot.commands import CommandRegistry
from bot.dispatcher import CommandDispatcher
from bot.i18n import Lang, Translator

ADMIN = "@admin:sante.example"
ROOM_ADMIN = "@cadre:hopital.example"
MODERATOR = "@infirmiere:hopital.example"
MEMBER = "@patient:hopital.example"

POWER_LEVELS: Mapping[str, Any] = {
    "users": {ROOM_ADMIN: 100, MODERATOR: 50},
    "users_default": 0,
}


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeServices:
    """Stands in for the running bridge; stores per-room languages like the real one would."""

    version = "0.1.0-test"

    def __init__(self) -> None:
        self.uptime = 93_784.0
        self.rooms = 12
        self.queue = 3
        self.languages: dict[str, Lang] = {}

    def uptime_seconds(self) -> float:
        return self.uptime

    async def rooms_watched(self) -> int:
        return self.rooms

    async def queue_depth(self) -> int:
        return self.queue

    async def set_room_language(self, room_id: str, lang: Lang) -> None:
        self.languages[room_id] = lang


class Room:
    """Sends bodies through the dispatcher the way the Matrix wiring does, recording replies."""

    def __init__(
        self,
        dispatcher: CommandDispatcher,
        services: FakeServices,
        clock: FakeClock,
        room_id: str = "!service-cardio:hopital.example",
    ) -> None:
        self.dispatcher = dispatcher
        self.services = services
        self.clock = clock
        self.room_id = room_id
        self.replies: list[str] = []
        self._ids = itertools.count(1)

    async def _reply(self, text: str) -> None:
        self.replies.append(text)

    async def send(
        self,
        body: str,
        sender: str = MEMBER,
        power_levels: Mapping[str, Any] | None = POWER_LEVELS,
        origin_server_ts: int | None = None,
    ) -> bool:
        ts = round(self.clock.now * 1000) if origin_server_ts is None else origin_server_ts
        ctx = self.dispatcher.context(
            sender=sender,
            room_id=self.room_id,
            event_id=f"$event{next(self._ids)}",
            origin_server_ts=ts,
            reply=self._reply,
            services=self.services,
            room_language=self.services.languages.get(self.room_id),
        )
        return await self.dispatcher.handle(ctx, body, power_levels)

    async def ask(self, body: str, sender: str = MEMBER, **kwargs: Any) -> str:
        """Send a command and return its single reply."""
        before = len(self.replies)
        assert await self.send(body, sender, **kwargs)
        new = self.replies[before:]
        assert len(new) == 1, new
        return new[0]


def make_room(
    *handlers: object,
    translator: Translator,
    clock: FakeClock,
    services: FakeServices,
    default_language: Lang = "fr",
) -> Room:
    registry = CommandRegistry.from_handlers(BuiltinCommands(clock=clock), *handlers)
    dispatcher = CommandDispatcher(
        registry, translator, "!sg", [ADMIN], default_language=default_language
    )
    return Room(dispatcher, services, clock)
