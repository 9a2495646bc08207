"""Version 7: the audit log's seal (signed checkpoints, pruning anchor)."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Scheme


async def upgrade(conn: Connection, scheme: Scheme) -> None:
    """Tables of the audit log's seal.

    - ``audit_checkpoint``: each signed checkpoint of the log's head — the last entry's
      ``seq``, ``hash`` and timestamp, and ``count``, the number of entries from the very
      first one to it (pruned ones included) — with the Ed25519 signature, the signing key's ID and
      public key, and when it was posted to the admin room (NULL until it was). The same
      lines go to the append-only checkpoint file; ``verify`` compares both with the log.
    - ``audit_anchor``: one row (``id = 1``) once the log has been pruned: the last
      pruned entry's ``seq`` and ``hash`` (the first kept entry chains onto it), how many
      entries were pruned in all, and when. An ``audit.pruned`` entry in the log records
      the same values, so the anchor cannot be moved without breaking the chain.
    """
    await conn.execute(
        """CREATE TABLE audit_checkpoint (
            seq        BIGINT PRIMARY KEY,
            head_hash  TEXT   NOT NULL,
            head_ts    BIGINT NOT NULL,
            count      BIGINT NOT NULL,
            ts         BIGINT NOT NULL,
            key_id     TEXT   NOT NULL,
            public_key TEXT   NOT NULL,
            signature  TEXT   NOT NULL,
            posted_at  BIGINT
        )"""
    )
    await conn.execute(
        """CREATE TABLE audit_anchor (
            id        INTEGER PRIMARY KEY CHECK (id = 1),
            seq       BIGINT NOT NULL,
            hash      TEXT   NOT NULL,
            count     BIGINT NOT NULL,
            ts        BIGINT NOT NULL,
            pruned_at BIGINT NOT NULL
        )"""
    )
