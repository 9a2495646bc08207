"""Event routes: capabilities subscribe; guards run first and may refuse; order is kept."""

from __future__ import annotations

from typing import Any

from bridge.spine.routes import EventRoutes

BOT = "@santeguard:x"


def _event(event_type: str, sender: str = "@a:x") -> dict[str, Any]:
    return {"type": event_type, "sender": sender, "room_id": "!r:x", "event_id": "$e"}


class Recorder:
    def __init__(self, name: str, calls: list[str], result: bool = False) -> None:
        self.name, self.calls, self.result = name, calls, result

    async def __call__(self, event: dict[str, Any]) -> bool:
        self.calls.append(self.name)
        return self.result


async def test_handlers_run_in_registration_order_and_any_action_counts() -> None:
    calls: list[str] = []
    routes = EventRoutes(BOT)
    routes.on("m.room.member", Recorder("first", calls, False))
    routes.on("m.room.member", Recorder("second", calls, True))
    routes.on("m.room.member", Recorder("third", calls, False))
    assert await routes.handle(_event("m.room.member"))
    assert calls == ["first", "second", "third"]


async def test_a_guard_that_refuses_stops_the_handlers() -> None:
    calls: list[str] = []
    routes = EventRoutes(BOT)
    routes.guard("m.room.message", Recorder("guard", calls, True))
    routes.on("m.room.message", Recorder("command", calls, True))
    assert await routes.handle(_event("m.room.message"))
    assert calls == ["guard"]


async def test_a_guard_that_lets_through_reaches_the_handlers() -> None:
    calls: list[str] = []
    routes = EventRoutes(BOT)
    routes.guard("m.room.message", Recorder("guard", calls, False))
    routes.on("m.room.message", Recorder("command", calls, False))
    assert not await routes.handle(_event("m.room.message"))
    assert calls == ["guard", "command"]


async def test_own_events_skip_handlers_that_ignore_them() -> None:
    calls: list[str] = []
    routes = EventRoutes(BOT)
    routes.guard("m.room.message", Recorder("guard", calls, True), ignore_own=True)
    routes.on("m.room.message", Recorder("mine-too", calls, False))
    routes.on("m.room.message", Recorder("not-mine", calls, False), ignore_own=True)
    await routes.handle(_event("m.room.message", sender=BOT))
    assert calls == ["mine-too"]


async def test_unknown_and_malformed_types_call_nothing() -> None:
    calls: list[str] = []
    routes = EventRoutes(BOT)
    routes.on("m.room.message", Recorder("x", calls, True))
    assert not await routes.handle(_event("org.example.custom"))
    assert not await routes.handle({"type": 5, "sender": "@a:x"})
    assert calls == []


async def test_decrypted_events_reach_only_decrypted_handlers() -> None:
    calls: list[str] = []
    routes = EventRoutes(BOT)
    routes.guard("m.room.message", Recorder("guard", calls, True))
    routes.on("m.room.message", Recorder("clear", calls, True))
    routes.on_decrypted("m.room.message", Recorder("decrypted", calls, True))
    assert await routes.handle_decrypted(_event("m.room.message"))
    assert calls == ["decrypted"]
    assert routes.event_types() == {"m.room.message"}


async def test_wildcard_guards_see_every_type_first() -> None:
    calls: list[str] = []
    routes = EventRoutes(BOT)
    routes.on("m.room.topic", Recorder("topic", calls, False))
    routes.guard("*", Recorder("any-guard", calls, False))
    assert not await routes.handle(_event("m.room.topic"))
    assert not await routes.handle(_event("org.example.custom"))
    assert calls == ["any-guard", "topic", "any-guard"]
    routes.guard("*", Recorder("refuse-all", calls, True))
    calls.clear()
    assert await routes.handle(_event("m.room.topic"))
    assert calls == ["any-guard", "refuse-all"]
