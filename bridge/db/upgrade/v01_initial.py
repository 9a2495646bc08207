"""Version 1: the durable transaction spine and the audit log."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Scheme


async def upgrade(conn: Connection, scheme: Scheme) -> None:
    """Create the core tables.

    ``txn`` holds each homeserver transaction's raw body (its events), committed before
    the ack and marked done once every event in it is handled. ``dead_letter`` keeps the
    events that failed every attempt, so nothing is dropped silently.
    """
    if scheme == Scheme.SQLITE:
        serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
        blob = "BLOB"
    else:
        serial = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
        blob = "BYTEA"
    await conn.execute(
        f"""CREATE TABLE txn (
            seq         {serial},
            txn_id      TEXT    NOT NULL UNIQUE,
            body        {blob}  NOT NULL,
            event_count INTEGER NOT NULL,
            received_at BIGINT  NOT NULL,
            status      TEXT    NOT NULL DEFAULT 'pending',
            done_at     BIGINT
        )"""
    )
    await conn.execute("CREATE INDEX txn_status_idx ON txn (status, seq)")
    if scheme != Scheme.SQLITE:
        # Bodies are JSON already; compressing them costs CPU on the ack path for little.
        await conn.execute("ALTER TABLE txn ALTER COLUMN body SET STORAGE EXTERNAL")
    await conn.execute(
        """CREATE TABLE dead_letter (
            event_id    TEXT    PRIMARY KEY,
            txn_seq     BIGINT  NOT NULL,
            room_id     TEXT    NOT NULL,
            event_type  TEXT    NOT NULL,
            attempts    INTEGER NOT NULL,
            last_error  TEXT    NOT NULL,
            failed_at   BIGINT  NOT NULL
        )"""
    )
    await conn.execute(
        """CREATE TABLE bot_command (
            event_id    TEXT    PRIMARY KEY,
            room_id     TEXT    NOT NULL,
            sender      TEXT    NOT NULL,
            status      TEXT    NOT NULL,
            updated_at  BIGINT  NOT NULL
        )"""
    )
    await conn.execute(
        """CREATE TABLE room (
            room_id    TEXT PRIMARY KEY,
            language   TEXT,
            joined     BOOLEAN NOT NULL DEFAULT false,
            updated_at BIGINT  NOT NULL
        )"""
    )
    await conn.execute(
        f"""CREATE TABLE audit_log (
            seq       {serial},
            ts        BIGINT NOT NULL,
            actor     TEXT   NOT NULL,
            action    TEXT   NOT NULL,
            room_id   TEXT,
            subject   TEXT,
            details   TEXT   NOT NULL,
            prev_hash TEXT   NOT NULL,
            hash      TEXT   NOT NULL
        )"""
    )
