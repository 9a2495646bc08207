"""Which senders' devices the bot could not decrypt, per room, for ``!sg encryption``.

Kept on disk (0600, next to the keys) so the answer survives a restart; only device
identities and counts are stored, never anything of the messages. Capped per room,
the least recent devices dropped first.
"""

from __future__ import annotations

import time
from pathlib import Path

from bridge.e2ee.files import read_json, write_private_json
from bridge.e2ee.status import UndecryptableDevice

UNDECRYPTABLE_FILE = "undecryptable.json"
_MAX_PER_ROOM = 20


class UndecryptableLog:
    def __init__(self, store: Path) -> None:
        self._path = store / UNDECRYPTABLE_FILE

    def record(self, room_id: str, sender: str, device_id: str) -> None:
        data = read_json(self._path)
        data = data if isinstance(data, dict) else {}
        room = data.setdefault(room_id, {})
        key = f"{sender}|{device_id}"
        entry = room.get(key) or {"sender": sender, "device_id": device_id, "count": 0}
        entry["count"] = int(entry.get("count", 0)) + 1
        entry["last_failure_ms"] = int(time.time() * 1000)
        room[key] = entry
        if len(room) > _MAX_PER_ROOM:
            oldest = sorted(room, key=lambda k: room[k]["last_failure_ms"])
            for k in oldest[: len(room) - _MAX_PER_ROOM]:
                del room[k]
        write_private_json(self._path, data)

    def for_room(self, room_id: str) -> tuple[UndecryptableDevice, ...]:
        """The room's undecryptable devices, most recent failure first."""
        data = read_json(self._path)
        room = data.get(room_id, {}) if isinstance(data, dict) else {}
        found = [
            UndecryptableDevice(
                str(e["sender"]), str(e["device_id"]), int(e["count"]), int(e["last_failure_ms"])
            )
            for e in room.values()
        ]
        return tuple(sorted(found, key=lambda d: -d.last_failure_ms))
