"""The one ``mautrix.util.async_db.Database``, with SantéGuard's upgrades and settings."""

from __future__ import annotations

import logging

from mautrix.util.async_db import Database

from bridge.db.upgrade import build_upgrade_table


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
        db_args = {"min_size": min_size, "max_size": max_size}
    return Database.create(
        uri,
        upgrade_table=build_upgrade_table(),
        db_args=db_args,
        log=logging.getLogger("santeguard.db"),
    )
