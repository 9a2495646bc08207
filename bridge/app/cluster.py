"""Builds the cluster parts: the leader's lease, the change feed, the jobs' claims.

On PostgreSQL every replica runs all three (docs/cluster.md); on SQLite, one process,
the lease is held from the start and the feed is never stale.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mautrix.util.async_db import Database, Scheme

from bridge.cluster.feed import PgChangeFeed, Reload, SoloFeed
from bridge.cluster.jobs import JobClaims
from bridge.cluster.lease import Lease, PgLease, SoloLease
from bridge.config import Config


@dataclass(slots=True)
class ClusterParts:
    replica_id: str
    lease: Lease
    feed: PgChangeFeed | SoloFeed
    claims: JobClaims | None
    shared: bool  # several replicas may share the database (PostgreSQL)


def replica_id(config: Config) -> str:
    """The configured name, else host name and process ID (unique on one host)."""
    return config.cluster.replica_id or f"{socket.gethostname()}-{os.getpid()}"


def build_cluster(
    config: Config,
    db: Database,
    snapshots: Mapping[str, tuple[Reload, ...]],
    *,
    on_txn: Callable[[], None],
) -> ClusterParts:
    """``snapshots``: for each mirrored table, the reloads of the stores mirroring it."""
    me = replica_id(config)
    if db.scheme == Scheme.SQLITE:
        return ClusterParts(me, SoloLease(), SoloFeed(), JobClaims(db, me), shared=False)
    c = config.cluster
    dsn = config.database.uri
    lease = PgLease(
        dsn,
        replica_id=me,
        poll_seconds=c.lease_poll_seconds,
        heartbeat_seconds=c.heartbeat_seconds,
        grace_seconds=c.takeover_grace_seconds,
    )
    feed = PgChangeFeed(
        dsn,
        snapshots,
        on_txn=on_txn,
        heartbeat_seconds=c.heartbeat_seconds,
        refresh_seconds=c.refresh_seconds,
        max_staleness_seconds=c.max_staleness_seconds,
    )
    return ClusterParts(me, lease, feed, JobClaims(db, me), shared=True)
