"""Version 8: several replicas on one PostgreSQL database (docs/cluster.md)."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Scheme

#: Tables mirrored in memory by every replica (bridge/cluster/feed.py reloads them).
SNAPSHOT_TABLES = ("verification", "room_policy", "room", "mail_link", "mail_allowlist")


async def upgrade(conn: Connection, scheme: Scheme) -> None:
    """Change notifications and scheduled jobs' claims.

    - ``job_run``: one row per scheduled job: when it is next due, when it last started
      and finished, and which replica ran it. A run is *claimed* by moving ``next_due``
      forward in one statement, so a job runs once per period whichever replica leads,
      across failovers (bridge/cluster/jobs.py).
    - On PostgreSQL, statement-level triggers ``NOTIFY santeguard_changes`` with the table
      name after every write to a table the replicas mirror in memory (a follower that
      stores a transaction notifies ``txn`` in its insert: bridge/spine/queue.py; the
      leader reads it back). Delivered at commit, to every
      replica's change feed; the payload is ``schema:table``, so deployments in different
      schemas of one database ignore each other's changes. SQLite is one process: it needs neither.
    """
    await conn.execute(
        """CREATE TABLE job_run (
            name          TEXT PRIMARY KEY,
            next_due      BIGINT NOT NULL,
            last_started  BIGINT,
            last_finished BIGINT,
            last_outcome  TEXT,
            runs          BIGINT NOT NULL DEFAULT 0,
            replica       TEXT
        )"""
    )
    if scheme == Scheme.SQLITE:
        return
    await conn.execute(
        """CREATE FUNCTION santeguard_notify_change() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_notify('santeguard_changes', TG_TABLE_SCHEMA || ':' || TG_ARGV[0]);
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql"""
    )
    for table in SNAPSHOT_TABLES:
        await conn.execute(
            f"CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION santeguard_notify_change('{table}')"
        )
