"""Version 3: verified practitioners bound to Matrix accounts, and per-room gate policy."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Scheme


async def upgrade(conn: Connection, scheme: Scheme) -> None:
    """``verification``: one row per bound Matrix user (history lives in the audit log).

    ``room_member`` mirrors memberships seen in transactions, so removing a practitioner
    "everywhere" needs no homeserver admin API.
    """
    await conn.execute(
        """CREATE TABLE verification (
            user_id         TEXT   PRIMARY KEY,
            idnps           TEXT   NOT NULL,
            source          TEXT   NOT NULL,
            profession_code TEXT,
            last_name       TEXT   NOT NULL,
            first_name      TEXT   NOT NULL,
            checked_at      BIGINT NOT NULL,
            valid_until     BIGINT NOT NULL,
            bound_by        TEXT   NOT NULL,
            bound_at        BIGINT NOT NULL
        )"""
    )
    await conn.execute("CREATE INDEX verification_idnps_idx ON verification (idnps)")
    await conn.execute(
        """CREATE TABLE room_member (
            room_id    TEXT   NOT NULL,
            user_id    TEXT   NOT NULL,
            membership TEXT   NOT NULL,
            updated_at BIGINT NOT NULL,
            PRIMARY KEY (room_id, user_id)
        )"""
    )
    await conn.execute("CREATE INDEX room_member_user_idx ON room_member (user_id)")
    await conn.execute(
        """CREATE TABLE room_policy (
            room_id     TEXT   PRIMARY KEY,
            protected   BOOLEAN,
            professions TEXT   NOT NULL DEFAULT '',
            updated_by  TEXT   NOT NULL,
            updated_at  BIGINT NOT NULL
        )"""
    )
