"""Small helpers shared by tests (no fixtures here; see conftest.py)."""

from __future__ import annotations

import socket
from typing import Any

from bridge.config import Config


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


AS_TOKEN = "as-token-3c1f0c5e9b7d4a21"
HS_TOKEN = "hs-token-8e2d7f6a1b9c4e53"
GATE_TOKEN = "gate-token-5a7e9c1d3f2b4e68"


def make_config(db_uri: str, homeserver: str = "http://127.0.0.1:9", **sections: Any) -> Config:
    port = free_port()
    data: dict[str, Any] = {
        "homeserver": {"address": homeserver, "domain": "santeguard.test"},
        "appservice": {
            "address": f"http://127.0.0.1:{port}",
            "hostname": "127.0.0.1",
            "port": port,
            "as_token": AS_TOKEN,
            "hs_token": HS_TOKEN,
            "max_body_bytes": 256 * 1024,
        },
        "antispam": {"token": GATE_TOKEN},
        "database": {"uri": db_uri},
        "dispatch": {"retry_base_seconds": 0.01, "max_attempts": 3},
        "bot": {"admins": ["@admin:santeguard.test"]},
        # Intake and dispatch tests send clear messages from unverified users.
        "gate": {"protect_by_default": False},
    }
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return Config(**data)


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
