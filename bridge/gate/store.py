"""Room policies (in memory, written through) and room memberships (database only).

The synchronous gate reads a room's policy on the homeserver's path, so policies are
loaded at start and every change writes the database first, then memory. Memberships
are what the backstop has seen, used to find whom a policy change must remove.
"""

from __future__ import annotations

import time

from mautrix.util.async_db import Database

from bridge.gate.policy import RoomPolicy


def _now_ms() -> int:
    return int(time.time() * 1000)


class RoomPolicyStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._rooms: dict[str, RoomPolicy] = {}

    async def load(self) -> None:
        rooms: dict[str, RoomPolicy] = {}
        for r in await self.db.fetch("SELECT room_id, protected, professions FROM room_policy"):
            profs = frozenset(p for p in str(r["professions"]).split(",") if p)
            protected = None if r["protected"] is None else bool(r["protected"])
            rooms[r["room_id"]] = RoomPolicy(protected=protected, professions=profs)
        self._rooms = rooms

    def room(self, room_id: str) -> RoomPolicy:
        return self._rooms.get(room_id, RoomPolicy())

    async def set_room(self, room_id: str, policy: RoomPolicy, updated_by: str) -> None:
        await self.db.execute(
            "INSERT INTO room_policy (room_id, protected, professions, updated_by, updated_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (room_id) DO UPDATE SET "
            "protected = excluded.protected, professions = excluded.professions, "
            "updated_by = excluded.updated_by, updated_at = excluded.updated_at",
            room_id,
            policy.protected,
            ",".join(sorted(policy.professions)),
            updated_by,
            _now_ms(),
        )
        self._rooms[room_id] = policy

    async def set_membership(self, room_id: str, user_id: str, membership: str) -> None:
        await self.db.execute(
            "INSERT INTO room_member (room_id, user_id, membership, updated_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (room_id, user_id) DO UPDATE SET "
            "membership = excluded.membership, updated_at = excluded.updated_at",
            room_id,
            user_id,
            membership,
            _now_ms(),
        )

    async def rooms_of(self, user_id: str) -> list[str]:
        """Rooms where the user is joined or invited."""
        rows = await self.db.fetch(
            "SELECT room_id FROM room_member WHERE user_id = $1 "
            "AND membership IN ('join', 'invite')",
            user_id,
        )
        return [str(r["room_id"]) for r in rows]

    async def members_of(self, room_id: str) -> list[str]:
        rows = await self.db.fetch(
            "SELECT user_id FROM room_member WHERE room_id = $1 "
            "AND membership IN ('join', 'invite')",
            room_id,
        )
        return [str(r["user_id"]) for r in rows]
