"""The one ``mautrix.util.async_db.Database``, with SantéGuard's upgrades and settings."""

from __future__ import annotations

import logging

import asyncpg
from mautrix.util.async_db import Database, Scheme

from bridge.db.upgrade import build_upgrade_table


async def keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset: nothing beyond asyncpg's own (an open transaction rolled back).

    asyncpg's default reset sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release, a round trip the caller waits for before its query
    returns: on the intake, between the commit and the homeserver's ack (measured,
    PostgreSQL without the dispatcher: 0.33 of the bare handler against the durable
    floor's 0.45). No pooled connection keeps session state: the leader's lease and the
    change feed hold connections of their own, the audit's lock is transaction-level
    and settings are ``SET LOCAL`` (``tests/db/test_pool_session.py``).
    """


def open_database(
    uri: str, *, sqlite_synchronous: str = "full", min_size: int = 1, max_size: int = 10
) -> Database:
    """SQLite in WAL mode with the configured ``synchronous``; PostgreSQL with a pool."""
    if uri.startswith("sqlite"):
        db_args: dict[str, object] = {
            "init_commands": [
                "PRAGMA journal_mode = WAL",
                f"PRAGMA synchronous = {sqlite_synchronous.upper()}",
            ]
        }
    else:
        db_args = {
            "min_size": min_size,
            "max_size": max_size,
            "reset": keep_session,
            # mautrix exits the process on an asyncpg internal client error (exit 26), seen
            # when the database restarts under load: the caller gets the error instead (a
            # 503 the homeserver retries, a handler retried by the dispatcher).
            "meow_exit_on_ice": False,
        }
    return Database.create(
        uri,
        upgrade_table=build_upgrade_table(),
        db_args=db_args,
        log=logging.getLogger("santeguard.db"),
    )


async def start_database(db: Database, uri: str) -> None:
    """Start ``db``, running its schema upgrades under an advisory lock on PostgreSQL:
    replicas starting together on an empty database upgrade it one after the other
    (mautrix's upgrade takes no lock; the second would fail on the tables the first
    made). The lock's key is per schema, like the leader's lease."""
    if db.scheme == Scheme.SQLITE:
        await db.start()
        return
    conn = await asyncpg.connect(uri, timeout=30)
    try:
        await conn.execute(
            "SELECT pg_advisory_lock(hashtext('santeguard-upgrade'), hashtext(current_schema()))"
        )
        await db.start()
    finally:
        await conn.close()  # ends the session: the lock goes with it
