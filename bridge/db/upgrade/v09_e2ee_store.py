"""Version 09: E2EE: the device and its crypto store in the database."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Scheme


async def upgrade(conn: Connection, scheme: Scheme) -> None:
    """The bot's encrypted device, for ``encryption.store_in_database``.

    ``e2ee_store`` has one row (``id = 1``): the whole device store directory (device ID
    and token, olm/megolm state, cross-signing seeds) as one archive, encrypted with a key
    derived from the appservice's ``as_token`` (bridge/e2ee/device/dbstore.py). ``data``
    is NULL until the first save. ``generation`` fences replicas: the replica that takes
    the device over increments it (``claimed_by``, ``claimed_at``), and every save is a
    compare-and-set on it (``saved_by``, ``saved_at``), so a replica that lost the device
    can never overwrite the new leader's store.
    """
    blob = "BYTEA" if scheme != Scheme.SQLITE else "BLOB"
    await conn.execute(
        f"""CREATE TABLE e2ee_store (
            id         INTEGER PRIMARY KEY CHECK (id = 1),
            generation BIGINT  NOT NULL,
            data       {blob},
            saved_at   BIGINT,
            saved_by   TEXT,
            claimed_at BIGINT  NOT NULL,
            claimed_by TEXT    NOT NULL
        )"""
    )
