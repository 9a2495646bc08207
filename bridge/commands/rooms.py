"""Rooms the bot knows about: whether it is in them, and each room's language."""

from __future__ import annotations

import time

from mautrix.util.async_db import Database

from bridge.core.ports import AuditPort


class RoomStore:
    """Where the bot is joined is also held in memory: the e2ee capability asks it for
    every encrypted event (most of the traffic) to decrypt only where the bot was asked in."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._joined: set[str] = set()

    async def load(self) -> None:
        rows = await self.db.fetch("SELECT room_id FROM room WHERE joined = true")
        self._joined = {str(r["room_id"]) for r in rows}

    def is_joined(self, room_id: str) -> bool:
        return room_id in self._joined

    async def set_joined(self, room_id: str, joined: bool) -> None:
        await self.db.execute(
            "INSERT INTO room (room_id, joined, updated_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (room_id) DO UPDATE SET joined = excluded.joined, "
            "updated_at = excluded.updated_at",
            room_id,
            joined,
            int(time.time() * 1000),
        )
        if joined:
            self._joined.add(room_id)
        else:
            self._joined.discard(room_id)

    async def language(self, room_id: str) -> str | None:
        value = await self.db.fetchval("SELECT language FROM room WHERE room_id = $1", room_id)
        return str(value) if value else None

    async def set_language(self, room_id: str, language: str) -> None:
        await self.db.execute(
            "INSERT INTO room (room_id, language, updated_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (room_id) DO UPDATE SET language = excluded.language, "
            "updated_at = excluded.updated_at",
            room_id,
            language,
            int(time.time() * 1000),
        )

    async def count_joined(self) -> int:
        return int(await self.db.fetchval("SELECT COUNT(*) FROM room WHERE joined = true") or 0)


class LanguageSetting:
    """`!sg language`: the room's language is stored and the change audited."""

    def __init__(self, rooms: RoomStore, audit: AuditPort) -> None:
        self._rooms = rooms
        self._audit = audit

    async def set(self, room_id: str, language: str) -> None:
        await self._rooms.set_language(room_id, language)
        await self._audit.record(
            "bot", "room.language", room_id=room_id, details={"language": language}
        )
