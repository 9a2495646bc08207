"""Version 10: the SQLite intake journal's pairing with its database."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Scheme


async def upgrade(conn: Connection, scheme: Scheme) -> None:
    """One row (``id = 1``): a random token, also written in the intake journal's header
    (bridge/db/intake_journal.py). A journal whose token is not this database's (a fresh
    database beside an old journal, another installation's file) is voided, never
    replayed into it. Unused on PostgreSQL (no journal there)."""
    del scheme
    await conn.execute(
        """CREATE TABLE intake_journal (
            id    INTEGER PRIMARY KEY CHECK (id = 1),
            token TEXT    NOT NULL
        )"""
    )
