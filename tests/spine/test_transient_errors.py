"""Which database errors are retried (the homeserver resends; the event is tried again)
and which are reported as faults: a table of the errors seen from asyncpg and sqlite3."""

from __future__ import annotations

import sqlite3

import asyncpg
import pytest

from bridge.db.transient import is_transient_db_error

CASES = [
    (ConnectionResetError("reset"), True),
    (TimeoutError(), True),
    (asyncpg.exceptions.ConnectionDoesNotExistError("gone"), True),
    (asyncpg.exceptions.AdminShutdownError("shutdown"), True),
    (asyncpg.exceptions.TooManyConnectionsError("too many"), True),
    (asyncpg.InterfaceError("connection is closed"), True),
    (asyncpg.InternalClientError("cannot switch to state 12; another operation (2)"), True),
    (sqlite3.OperationalError("database is locked"), True),
    (sqlite3.OperationalError("disk I/O error"), True),
    (asyncpg.InterfaceError("cannot perform operation: another operation is in progress"), False),
    (asyncpg.exceptions.UniqueViolationError("duplicate key"), False),
    (asyncpg.exceptions.UndefinedTableError("no such table"), False),
    (sqlite3.OperationalError("no such table: txn"), False),
    (sqlite3.IntegrityError("UNIQUE constraint failed"), False),
    (ValueError("bad"), False),
]


@pytest.mark.parametrize(("error", "transient"), CASES, ids=[repr(e)[:60] for e, _ in CASES])
def test_transient_or_not(error: BaseException, transient: bool) -> None:
    assert is_transient_db_error(error) is transient
