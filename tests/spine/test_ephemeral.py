"""Read receipts pushed by the homeserver (MSC2409) become pseudo-events; nothing else does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.core.ports import EPHEMERAL
from bridge.spine.ephemeral import MAX_RECEIPTS, receipt_events
from bridge.spine.queue import events_of
from bridge.spine.routes import EventRoutes


def _receipt(room: str, event: str, user: str, ts: Any = 1000) -> dict[str, Any]:
    return {
        "type": "m.receipt",
        "room_id": room,
        "content": {event: {"m.read": {user: {"ts": ts}}}},
    }


CASES = [
    ("no ephemeral", {}, 0),
    ("stable key", {"ephemeral": [_receipt("!r", "$e", "@u:x")]}, 1),
    ("msc key", {"de.sorunome.msc2409.ephemeral": [_receipt("!r", "$e", "@u:x")]}, 1),
    (
        "both keys: counted once",
        {
            "ephemeral": [_receipt("!r", "$e", "@u:x")],
            "de.sorunome.msc2409.ephemeral": [_receipt("!r", "$e", "@u:x")],
        },
        1,
    ),
    ("typing ignored", {"ephemeral": [{"type": "m.typing", "room_id": "!r", "content": {}}]}, 0),
    ("not a list", {"ephemeral": {"type": "m.receipt"}}, 0),
    ("item not an object", {"ephemeral": ["x", 3, None]}, 0),
    ("no room", {"ephemeral": [{"type": "m.receipt", "content": {"$e": {}}}]}, 0),
    (
        "content not object",
        {"ephemeral": [{"type": "m.receipt", "room_id": "!r", "content": []}]},
        0,
    ),
    (
        "private receipts are not shared",
        {
            "ephemeral": [
                {
                    "type": "m.receipt",
                    "room_id": "!r",
                    "content": {"$e": {"m.read.private": {"@u:x": {"ts": 1}}}},
                }
            ]
        },
        0,
    ),
    (
        "readers not object",
        {
            "ephemeral": [
                {"type": "m.receipt", "room_id": "!r", "content": {"$e": {"m.read": ["@u:x"]}}}
            ]
        },
        0,
    ),
    ("bad ts kept as None", {"ephemeral": [_receipt("!r", "$e", "@u:x", ts="soon")]}, 1),
]


@pytest.mark.parametrize(("name", "data", "count"), CASES, ids=[c[0] for c in CASES])
def test_receipt_events_table(name: str, data: dict[str, Any], count: int) -> None:
    events = receipt_events(data)
    assert len(events) == count
    for ev in events:
        assert ev["type"] == "m.receipt" and ev[EPHEMERAL] is True
        assert ev["event_id"].startswith("$receipt.")
        assert set(ev["content"]) == {"event_id", "ts"}


def test_pseudo_event_is_stable_and_distinct() -> None:
    a = receipt_events({"ephemeral": [_receipt("!r", "$e", "@u:x")]})[0]
    b = receipt_events({"ephemeral": [_receipt("!r", "$e", "@u:x", ts=5)]})[0]
    c = receipt_events({"ephemeral": [_receipt("!r", "$f", "@u:x")]})[0]
    assert a["event_id"] == b["event_id"] != c["event_id"]
    assert a["sender"] == "@u:x" and a["content"]["event_id"] == "$e"


def test_receipts_are_bounded() -> None:
    readers = {f"@u{i}:x": {"ts": i} for i in range(MAX_RECEIPTS + 50)}
    data = {
        "ephemeral": [
            {"type": "m.receipt", "room_id": "!r", "content": {"$e": {"m.read": readers}}}
        ]
    }
    assert len(receipt_events(data)) == MAX_RECEIPTS


def test_stored_body_yields_room_events_then_receipts() -> None:
    body = json.dumps(
        {
            "events": [
                {
                    "type": "m.room.message",
                    "event_id": "$m",
                    "room_id": "!r",
                    "sender": "@a:x",
                    "content": {},
                }
            ],
            "ephemeral": [_receipt("!r", "$m", "@b:x")],
        }
    ).encode()
    events = events_of(body)
    assert [e["type"] for e in events] == ["m.room.message", "m.receipt"]


async def test_guards_do_not_judge_receipts_but_handlers_see_them() -> None:
    routes = EventRoutes("@bot:x")
    seen: list[str] = []

    async def refuse_all(event: dict[str, Any]) -> bool:
        seen.append("guard")
        return True

    async def handler(event: dict[str, Any]) -> bool:
        seen.append("handler")
        return True

    routes.guard("*", refuse_all)
    routes.on("m.receipt", handler)
    receipt = receipt_events({"ephemeral": [_receipt("!r", "$e", "@u:x")]})[0]
    assert await routes.handle(receipt)
    assert seen == ["handler"]
    # A room event of the same type, sent by a user, has no marker: the guards judge it.
    seen.clear()
    forged = {k: v for k, v in receipt.items() if k != EPHEMERAL}
    assert await routes.handle(forged)
    assert seen == ["guard"]
