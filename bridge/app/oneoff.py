"""The configured database, upgraded, for one-off commands (``santeguard audit …``).

In the composition root: it is the one place that knows both the config and the database."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from mautrix.util.async_db import Database

from bridge.config import Config
from bridge.db.database import open_database


@contextlib.asynccontextmanager
async def one_off_database(cfg: Config) -> AsyncIterator[Database]:
    d = cfg.database
    db = open_database(
        d.uri, sqlite_synchronous=d.sqlite_synchronous, min_size=d.min_size, max_size=d.max_size
    )
    await db.start()
    try:
        yield db
    finally:
        await db.stop()
