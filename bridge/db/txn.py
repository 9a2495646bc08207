"""Write transactions that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mautrix.util.async_db import Database, Scheme
from mautrix.util.async_db.connection import LoggingConnection

from bridge.db.replay import needs_sync


@asynccontextmanager
async def write_transaction(
    db: Database, *, synced: bool | None = True
) -> AsyncIterator[LoggingConnection]:
    """A transaction that will write, taking SQLite's write lock up front.

    A deferred SQLite transaction that reads and then writes fails at once with
    SQLITE_BUSY if another connection (the intake writer) committed in between; BEGIN
    IMMEDIATE waits for the lock (busy_timeout) instead. On PostgreSQL, a commit that
    need not be synced (``synced=False``, or None inside ``replayable``) does not wait
    for the WAL flush (``synchronous_commit = off``): PostgreSQL recovers a prefix of
    its WAL, so losing it also loses the later done mark (``bridge.db.replay``); the
    next synced commit, or the WAL writer within 200 ms, flushes it.
    """
    async with db.acquire() as conn:  # type: ignore[var-annotated]
        if db.scheme != Scheme.SQLITE:
            async with conn.transaction():
                if not needs_sync(synced):
                    await conn.execute("SET LOCAL synchronous_commit TO OFF")
                yield conn
            return
        await conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
