"""Version 09: E2EE: the device and its crypto store in the database."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Scheme


async def upgrade(conn: Connection, scheme: Scheme) -> None:
    """Placeholder filled by its issue-11 change."""
    return None
