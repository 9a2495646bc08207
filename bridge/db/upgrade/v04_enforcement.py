"""Version 4: durable enforcement work, and closed admin rooms."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Scheme


async def upgrade(conn: Connection, scheme: Scheme) -> None:
    """``enforcement``: one row per (room, member) the gate must check and, if it still
    does not admit them, remove. Written in the same transaction as the change that
    calls for it (an unbinding, a room rule); deleted once the homeserver confirmed the
    member is gone or the gate admits them (history is in the audit log). A worker
    claims a row by setting ``claimed_until`` while it works on it.

    ``room_policy.admin_room``: rooms where network admins talk to the bot, closed to
    everybody else.
    """
    await conn.execute(
        """CREATE TABLE enforcement (
            room_id    TEXT    NOT NULL,
            user_id    TEXT    NOT NULL,
            reason     TEXT    NOT NULL DEFAULT '',
            trigger    TEXT    NOT NULL,
            created_at BIGINT  NOT NULL,
            due_at     BIGINT  NOT NULL,
            claimed_until BIGINT,
            attempts   INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            alerted    BOOLEAN NOT NULL DEFAULT false,
            PRIMARY KEY (room_id, user_id)
        )"""
    )
    await conn.execute("CREATE INDEX enforcement_due_idx ON enforcement (due_at)")
    await conn.execute(
        "ALTER TABLE room_policy ADD COLUMN admin_room BOOLEAN NOT NULL DEFAULT false"
    )
