"""Rooms the bot knows about: whether it is in them, and each room's language."""

from __future__ import annotations

import time

from mautrix.util.async_db import Database

from bridge.core.ports import AuditPort


class RoomStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def set_joined(self, room_id: str, joined: bool) -> None:
        await self.db.execute(
            "INSERT INTO room (room_id, joined, updated_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (room_id) DO UPDATE SET joined = excluded.joined, "
            "updated_at = excluded.updated_at",
            room_id,
            joined,
            int(time.time() * 1000),
        )

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
