"""Throwaway PostgreSQL databases for a local Synapse (tests, benchmarks, the demo).

Synapse refuses a database whose collation is not ``C``, so these helpers create one it
accepts, and drop it again forcing any leftover session out. They need a role allowed
to create databases; nothing in the production code path imports them.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import AsyncIterator
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

__all__ = [
    "create_postgres_database",
    "drop_postgres_database",
    "temporary_postgres_database",
]

#: Names are interpolated into DDL (identifiers cannot be bound), so only plain ones pass.
_DB_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _with_database(dsn: str, name: str) -> str:
    """``dsn`` pointing at database ``name`` instead (same server, role and options)."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _checked_name(name: str) -> str:
    if not _DB_NAME_RE.match(name):
        raise ValueError(f"invalid database name: {name!r}")
    return name


async def create_postgres_database(admin_dsn: str, name: str | None = None) -> str:
    """Create a database Synapse accepts (UTF8, C collation) and return its DSN.

    ``admin_dsn`` points at any database of the server, with a role allowed to
    create databases.
    """
    name = _checked_name(name or f"sg_synapse_{secrets.token_hex(4)}")
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(
            f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0 "
            "LC_COLLATE 'C' LC_CTYPE 'C'"
        )
    finally:
        await conn.close()
    return _with_database(admin_dsn, name)


async def drop_postgres_database(admin_dsn: str, name_or_dsn: str) -> None:
    """Drop a database made by :func:`create_postgres_database` (forcing sessions out)."""
    name = unquote(urlsplit(name_or_dsn).path.lstrip("/")) if "://" in name_or_dsn else name_or_dsn
    name = _checked_name(name)
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def temporary_postgres_database(admin_dsn: str) -> AsyncIterator[str]:
    """A fresh Synapse-compatible database for the duration of the block; yields its DSN."""
    dsn = await create_postgres_database(admin_dsn)
    try:
        yield dsn
    finally:
        await drop_postgres_database(admin_dsn, dsn)
