"""Version 6: retention — the event ledger, purge-proof audit runs, inactive rooms."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Scheme


async def upgrade(conn: Connection, scheme: Scheme) -> None:
    """Tables of the retention capability.

    - ``event_ledger``: every event SantéGuard has seen (ID, room, type, timestamp, whether
      it is state and whether SantéGuard sent it), never its content: what the purge-proof
      audit checks against the homeserver. ``purged_at`` is when the audit first proved it
      gone.
    - ``retention_audit_run`` / ``retention_audit_room``: each audit's verdict, per room,
      with the evidence (event IDs still retrievable past their lifetime).
    - ``room_inactivity``: a room's last activity, when its members were told it will be
      closed, when it was closed and its history purged.
    """
    serial = (
        "INTEGER PRIMARY KEY AUTOINCREMENT"
        if scheme == Scheme.SQLITE
        else "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    )
    await conn.execute(
        """CREATE TABLE event_ledger (
            event_id   TEXT    PRIMARY KEY,
            room_id    TEXT    NOT NULL,
            type       TEXT    NOT NULL,
            state      BOOLEAN NOT NULL,
            own        BOOLEAN NOT NULL,
            origin_ts  BIGINT  NOT NULL,
            seen_at    BIGINT  NOT NULL,
            purged_at  BIGINT
        )"""
    )
    await conn.execute("CREATE INDEX event_ledger_room_ts ON event_ledger (room_id, origin_ts)")
    await conn.execute(
        f"""CREATE TABLE retention_audit_run (
            run_id      {serial},
            started_at  BIGINT NOT NULL,
            finished_at BIGINT,
            verdict     TEXT,
            summary     TEXT   NOT NULL DEFAULT '{{}}'
        )"""
    )
    await conn.execute(
        """CREATE TABLE retention_audit_room (
            run_id          BIGINT NOT NULL,
            room_id         TEXT   NOT NULL,
            verdict         TEXT   NOT NULL,
            max_lifetime_ms BIGINT,
            policy_state    TEXT   NOT NULL,
            checked         INTEGER NOT NULL DEFAULT 0,
            purged          INTEGER NOT NULL DEFAULT 0,
            present         INTEGER NOT NULL DEFAULT 0,
            evidence        TEXT   NOT NULL DEFAULT '[]',
            reason          TEXT,
            PRIMARY KEY (run_id, room_id)
        )"""
    )
    await conn.execute(
        """CREATE TABLE room_inactivity (
            room_id          TEXT   PRIMARY KEY,
            last_activity_ts BIGINT NOT NULL,
            announced_at     BIGINT,
            closed_at        BIGINT,
            delete_id        TEXT,
            purged_at        BIGINT
        )"""
    )
