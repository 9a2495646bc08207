"""Small helpers shared by tests (no fixtures here; see conftest.py).

The config builder and its tokens come from :mod:`bridge.devtools.testconfig`, which the
benchmarks share; they are re-exported here for the tests that import them from here.
"""

from __future__ import annotations

from typing import Any

from bridge.devtools.testconfig import AS_TOKEN, GATE_TOKEN, HS_TOKEN, free_port, make_config

__all__ = ["AS_TOKEN", "GATE_TOKEN", "HS_TOKEN", "free_port", "make_config", "message_event"]


def message_event(
    room: str, n: int, body: str = "hello", sender: str = "@a:santeguard.test"
) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": f"$ev{n}-{room.strip('!').split(':')[0]}",
        "room_id": room,
        "sender": sender,
        "origin_server_ts": 1_700_000_000_000 + n,
        "content": {"msgtype": "m.text", "body": f"{body} {n}"},
    }
