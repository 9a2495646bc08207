"""Which database errors are worth retrying: the database is unreachable or busy."""

from __future__ import annotations

import sqlite3

import asyncpg

_SQLITE_TRANSIENT = ("locked", "busy", "disk I/O error", "unable to open")


def is_transient_db_error(e: BaseException) -> bool:
    """Whether ``e`` says the database is unreachable or overloaded (worth retrying)."""
    if isinstance(e, (OSError, TimeoutError)):
        return True
    if isinstance(
        e,
        (
            asyncpg.PostgresConnectionError,
            asyncpg.exceptions.OperatorInterventionError,
            asyncpg.exceptions.InsufficientResourcesError,
            # A connection cut mid-query can leave asyncpg's protocol in a state it
            # refuses to leave ("cannot switch to state ..."): the next try gets a new one.
            asyncpg.InternalClientError,
        ),
    ):
        return True
    if isinstance(e, asyncpg.InterfaceError) and "connection" in str(e).lower():
        return True
    return isinstance(e, sqlite3.OperationalError) and any(m in str(e) for m in _SQLITE_TRANSIENT)
