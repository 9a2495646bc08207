"""Room policies (in memory, written through) and room memberships (database only).

The synchronous gate reads a room's policy on the homeserver's path, so policies are
loaded at start and every change writes the database first, then memory. Memberships
are what the backstop has seen, used to find whom a policy change must remove.
"""

from __future__ import annotations

import time

from mautrix.util.async_db import Connection, Database

from bridge.core.ports import InTransaction
from bridge.db.sqlite_writer import SQLiteWriter
from bridge.db.txn import write_transaction
from bridge.gate.policy import RoomPolicy

_UPSERT_MEMBER = (
    "INSERT INTO room_member (room_id, user_id, membership, updated_at) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT (room_id, user_id) DO UPDATE SET "
    "membership = excluded.membership, updated_at = excluded.updated_at"
)


def _now_ms() -> int:
    return int(time.time() * 1000)


class RoomPolicyStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._rooms: dict[str, RoomPolicy] = {}
        self._writer: SQLiteWriter | None = None

    def use_writer(self, writer: SQLiteWriter | None) -> None:
        """On SQLite, write memberships through the intake's writer: a commit on the pool
        connection would hold the write lock (and pay its own fsync) against the intake's
        commits; through the writer it joins their group commit."""
        self._writer = writer

    async def load(self) -> None:
        rooms: dict[str, RoomPolicy] = {}
        for r in await self.db.fetch(
            "SELECT room_id, protected, professions, admin_room FROM room_policy"
        ):
            profs = frozenset(p for p in str(r["professions"]).split(",") if p)
            protected = None if r["protected"] is None else bool(r["protected"])
            rooms[r["room_id"]] = RoomPolicy(
                protected=protected, professions=profs, admin_room=bool(r["admin_room"])
            )
        self._rooms = rooms

    def room(self, room_id: str) -> RoomPolicy:
        return self._rooms.get(room_id, RoomPolicy())

    async def set_room(
        self,
        room_id: str,
        policy: RoomPolicy,
        updated_by: str,
        *,
        then: InTransaction | None = None,
    ) -> None:
        """Store the room's policy; ``then`` runs in the same database transaction (the
        enforcement work the new policy calls for), and memory follows the commit."""
        async with write_transaction(self.db) as conn:
            await conn.execute(
                "INSERT INTO room_policy (room_id, protected, professions, admin_room, "
                "updated_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (room_id) DO UPDATE SET protected = excluded.protected, "
                "professions = excluded.professions, admin_room = excluded.admin_room, "
                "updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                room_id,
                policy.protected,
                ",".join(sorted(policy.professions)),
                policy.admin_room,
                updated_by,
                _now_ms(),
            )
            if then is not None:
                await then(conn)
        self._rooms[room_id] = policy

    async def set_membership(self, room_id: str, user_id: str, membership: str) -> None:
        await self.set_memberships([(room_id, user_id, membership)])

    async def set_memberships(self, rows: list[tuple[str, str, str]]) -> None:
        """Record memberships as the homeserver reports them (one statement per batch)."""
        if not rows:
            return
        now = _now_ms()
        values = [(room_id, user_id, membership, now) for room_id, user_id, membership in rows]
        if self._writer is not None:
            await self._writer.executemany(_UPSERT_MEMBER, values)
            return
        async with write_transaction(self.db, synced=None) as conn:
            await conn.executemany(_UPSERT_MEMBER, values)

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

    async def members_via(self, conn: Connection, room_id: str) -> list[str]:
        """Joined or invited members, read inside the caller's transaction."""
        rows = await conn.fetch(
            "SELECT user_id FROM room_member WHERE room_id = $1 "
            "AND membership IN ('join', 'invite')",
            room_id,
        )
        return [str(r["user_id"]) for r in rows]

    async def rooms_via(self, conn: Connection, user_id: str) -> list[str]:
        """Rooms where the user is joined or invited, read inside the caller's transaction."""
        rows = await conn.fetch(
            "SELECT room_id FROM room_member WHERE user_id = $1 "
            "AND membership IN ('join', 'invite')",
            user_id,
        )
        return [str(r["room_id"]) for r in rows]

    async def replace_members(self, room_id: str, members: list[tuple[str, str]]) -> None:
        """The room's memberships as the homeserver reports them now; anyone recorded as
        joined or invited but absent from ``members`` has left.

        Only what changed is written: the reconcile sweep calls this for every room, and
        on a network of 10,000 rooms a commit per room, when nothing changed, made the
        sweep several times slower than the rooms' number alone explains (bench.scale).
        """
        rows = await self.db.fetch(
            "SELECT user_id, membership FROM room_member WHERE room_id = $1", room_id
        )
        recorded = {str(r["user_id"]): str(r["membership"]) for r in rows}
        present = {user for user, _ in members}
        gone = [u for u, m in recorded.items() if m in ("join", "invite") and u not in present]
        await self.set_memberships(
            [(room_id, u, m) for u, m in members if recorded.get(u) != m]
            + [(room_id, u, "leave") for u in gone]
        )
