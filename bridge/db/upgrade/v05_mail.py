"""Version 5: the mail bridge (links, allow-list, outbox, inbox, thread map, read receipts)."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Scheme


async def upgrade(conn: Connection, scheme: Scheme) -> None:
    """Tables of the mail capability.

    - ``mail_link``: one room ↔ one external MSSanté address; ``tag`` is the plus-address
      tag that routes replies back to the room.
    - ``mail_allowlist``: the imported MSSanté "liste blanche" (replaced atomically).
    - ``mail_outbox``: one row per outgoing mail, keyed by the Matrix event it comes from
      (a replayed event cannot queue a second mail) with a ``message_id`` derived from it;
      ``raw`` is the exact MIME message, so a retry sends the same bytes. Claimed with a
      lease (and ``FOR UPDATE SKIP LOCKED`` on PostgreSQL) so two workers never send it.
    - ``mail_message``: Message-ID ↔ Matrix event, both ways, for threads and receipts.
    - ``mail_mailbox``: the IMAP folder's UIDVALIDITY and the last UID fully handled.
    - ``mail_inbound``: each fetched mail's outcome (posted, quarantined, refused), keyed by
      (UIDVALIDITY, UID) and by Message-ID, so nothing is posted twice.
    - ``mail_quarantine``: mail that could not be routed or was refused, for the admins.
    - ``mail_receipt``: inbound mail that asked for a read receipt, until one was sent.
    - ``mail_file``: files seen in linked rooms (for ``!sg mail xdm``).
    """
    if scheme == Scheme.SQLITE:
        blob, serial = "BLOB", "INTEGER PRIMARY KEY AUTOINCREMENT"
    else:
        blob, serial = "BYTEA", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    await conn.execute(
        """CREATE TABLE mail_link (
            room_id    TEXT    PRIMARY KEY,
            address    TEXT    NOT NULL,
            tag        TEXT    NOT NULL UNIQUE,
            subject    TEXT    NOT NULL,
            linked_by  TEXT    NOT NULL,
            linked_at  BIGINT  NOT NULL
        )"""
    )
    await conn.execute(
        """CREATE TABLE mail_allowlist (
            domain      TEXT   PRIMARY KEY,
            imported_at BIGINT NOT NULL
        )"""
    )
    await conn.execute(
        f"""CREATE TABLE mail_outbox (
            event_id     TEXT    PRIMARY KEY,
            room_id      TEXT    NOT NULL,
            message_id   TEXT    NOT NULL UNIQUE,
            sender       TEXT    NOT NULL,
            recipient    TEXT    NOT NULL,
            kind         TEXT    NOT NULL DEFAULT 'message',
            raw          {blob}  NOT NULL,
            status       TEXT    NOT NULL DEFAULT 'pending',
            attempts     INTEGER NOT NULL DEFAULT 0,
            created_at   BIGINT  NOT NULL,
            due_at       BIGINT  NOT NULL,
            claimed_until BIGINT,
            first_try_at BIGINT,
            last_code    INTEGER,
            last_reply   TEXT,
            problem      TEXT,
            done_at      BIGINT,
            notified     TEXT    NOT NULL DEFAULT ''
        )"""
    )
    await conn.execute("CREATE INDEX mail_outbox_due_idx ON mail_outbox (status, due_at)")
    await conn.execute(
        """CREATE TABLE mail_message (
            message_id TEXT   PRIMARY KEY,
            room_id    TEXT   NOT NULL,
            event_id   TEXT   NOT NULL,
            direction  TEXT   NOT NULL,
            address    TEXT   NOT NULL DEFAULT '',
            created_at BIGINT NOT NULL
        )"""
    )
    await conn.execute("CREATE INDEX mail_message_event_idx ON mail_message (event_id)")
    await conn.execute("CREATE INDEX mail_message_room_idx ON mail_message (room_id, created_at)")
    await conn.execute(
        """CREATE TABLE mail_mailbox (
            folder      TEXT   PRIMARY KEY,
            uidvalidity BIGINT NOT NULL,
            last_uid    BIGINT NOT NULL
        )"""
    )
    await conn.execute(
        """CREATE TABLE mail_inbound (
            message_id  TEXT   PRIMARY KEY,
            uidvalidity BIGINT NOT NULL,
            uid         BIGINT NOT NULL,
            status      TEXT   NOT NULL,
            room_id     TEXT,
            event_id    TEXT,
            reason      TEXT,
            received_at BIGINT NOT NULL
        )"""
    )
    await conn.execute(
        f"""CREATE TABLE mail_quarantine (
            id          {serial},
            message_id  TEXT   NOT NULL,
            from_addr   TEXT   NOT NULL,
            reason      TEXT   NOT NULL,
            raw         {blob} NOT NULL,
            received_at BIGINT NOT NULL
        )"""
    )
    await conn.execute(
        """CREATE TABLE mail_receipt (
            event_id    TEXT   PRIMARY KEY,
            room_id     TEXT   NOT NULL,
            message_id  TEXT   NOT NULL,
            notify      TEXT   NOT NULL,
            subject     TEXT   NOT NULL,
            headers     TEXT   NOT NULL,
            posted_at   BIGINT NOT NULL
        )"""
    )
    await conn.execute("CREATE INDEX mail_receipt_room_idx ON mail_receipt (room_id, posted_at)")
    await conn.execute(
        """CREATE TABLE mail_file (
            event_id   TEXT   PRIMARY KEY,
            room_id    TEXT   NOT NULL,
            name       TEXT   NOT NULL,
            mimetype   TEXT   NOT NULL,
            size       BIGINT NOT NULL,
            url        TEXT   NOT NULL,
            file_info  TEXT,
            created_at BIGINT NOT NULL
        )"""
    )
    await conn.execute("CREATE INDEX mail_file_room_idx ON mail_file (room_id, created_at)")
