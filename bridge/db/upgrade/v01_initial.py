"""Version 1: the durable transaction spine and the audit log."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Scheme


async def upgrade(conn: Connection, scheme: Scheme) -> None:
    """Create the core tables.

    ``txn`` holds each homeserver transaction's raw body, committed before the ack;
    ``event_queue`` holds its events once expanded, handled in order per room.
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
            received_at BIGINT  NOT NULL,
            expanded    BOOLEAN NOT NULL DEFAULT false
        )"""
    )
    await conn.execute("CREATE INDEX txn_pending_idx ON txn (expanded, seq)")
    await conn.execute(
        f"""CREATE TABLE event_queue (
            seq         {serial},
            txn_seq     BIGINT  NOT NULL,
            event_id    TEXT    NOT NULL UNIQUE,
            room_id     TEXT    NOT NULL,
            event_type  TEXT    NOT NULL,
            body        TEXT    NOT NULL,
            status      TEXT    NOT NULL DEFAULT 'pending',
            attempts    INTEGER NOT NULL DEFAULT 0,
            last_error  TEXT,
            done_at     BIGINT
        )"""
    )
    await conn.execute("CREATE INDEX event_queue_status_idx ON event_queue (status, seq)")
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
