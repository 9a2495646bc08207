"""Write transactions that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mautrix.util.async_db import Database, Scheme
from mautrix.util.async_db.connection import LoggingConnection


@asynccontextmanager
async def write_transaction(db: Database) -> AsyncIterator[LoggingConnection]:
    """A transaction that will write, taking SQLite's write lock up front.

    A deferred SQLite transaction that reads and then writes fails at once with
    SQLITE_BUSY if another connection (the intake writer) committed in between; BEGIN
    IMMEDIATE waits for the lock (busy_timeout) instead.
    """
    async with db.acquire() as conn:  # type: ignore[var-annotated]
        if db.scheme != Scheme.SQLITE:
            async with conn.transaction():
                yield conn
            return
        await conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
