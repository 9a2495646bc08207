"""Which command events the bot has already answered, so a replay never answers twice."""

from __future__ import annotations

import time

from mautrix.util.async_db import Database


class CommandLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def already_done(self, event_id: str) -> bool:
        status = await self.db.fetchval(
            "SELECT status FROM bot_command WHERE event_id = $1", event_id
        )
        return bool(status == "done")

    async def mark(self, event_id: str, room_id: str, sender: str, status: str) -> None:
        await self.db.execute(
            "INSERT INTO bot_command (event_id, room_id, sender, status, updated_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO UPDATE SET "
            "status = excluded.status, updated_at = excluded.updated_at",
            event_id,
            room_id,
            sender,
            status,
            int(time.time() * 1000),
        )
