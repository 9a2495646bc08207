"""Ephemeral data the homeserver pushes (MSC2409), turned into events the routes can handle.

Read receipts matter to capabilities (a mail's read receipt is sent when a practitioner
reads it). Each ``m.read`` receipt of an ``m.receipt`` push becomes one pseudo-event
``{"type": "m.receipt", "room_id", "sender": reader, "content": {"event_id", "ts"}}``
with a stable ID, marked ``EPHEMERAL`` so the routes skip the guards (which judge room
content). Malformed entries are skipped: ephemeral data is advisory and must never stall
the transaction stream. So are identifiers no database can store (a lone surrogate, a NUL).
"""

from __future__ import annotations

import hashlib
from typing import Any

from bridge.core.antispam import encodable
from bridge.core.ports import EPHEMERAL

__all__ = ["EPHEMERAL", "receipt_events"]
_KEYS = ("ephemeral", "de.sorunome.msc2409.ephemeral")
MAX_RECEIPTS = 1000


def _storable(value: object) -> bool:
    """A string the handlers can store and send: valid UTF-8 (no lone surrogate), no NUL.
    Receipts are not validated at intake (advisory data), so identifiers are checked here."""
    return isinstance(value, str) and "\x00" not in value and encodable(value)


def receipt_events(data: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key in _KEYS:
        items = data.get(key)
        if not isinstance(items, list):
            continue
        for item in items:
            if not isinstance(item, dict) or item.get("type") != "m.receipt":
                continue
            room_id, content = item.get("room_id"), item.get("content")
            if not _storable(room_id) or not isinstance(content, dict):
                continue
            for event_id, kinds in content.items():
                readers = kinds.get("m.read") if isinstance(kinds, dict) else None
                if not _storable(event_id) or not isinstance(readers, dict):
                    continue
                for user_id, info in readers.items():
                    if not _storable(user_id) or len(out) >= MAX_RECEIPTS:
                        continue
                    ts = info.get("ts") if isinstance(info, dict) else None
                    digest = hashlib.sha256(
                        f"{room_id}\0{user_id}\0{event_id}".encode("utf-8", "replace")
                    ).hexdigest()[:32]
                    out.append(
                        {
                            "type": "m.receipt",
                            "room_id": room_id,
                            "sender": user_id,
                            "event_id": f"$receipt.{digest}",
                            "content": {
                                "event_id": event_id,
                                "ts": ts if isinstance(ts, int) else None,
                            },
                            EPHEMERAL: True,
                        }
                    )
        if out:
            break  # a homeserver sending both keys sends the same data twice
    return out
