"""The ``cluster:`` section: several replicas on one PostgreSQL database (docs/cluster.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ClusterConfig(BaseModel):
    """Replication settings; they only matter on PostgreSQL (SQLite is one process)."""

    model_config = ConfigDict(extra="forbid")

    replica_id: str | None = Field(
        None,
        description="This replica's name in logs, metrics and the audit log "
        "(default: the host name and process ID; the Helm chart sets the pod name).",
    )
    lease_poll_seconds: float = Field(
        1.0,
        gt=0,
        le=30,
        description="How often a follower tries to take the leader's lease (a PostgreSQL "
        "advisory lock, released when the leader's connection ends).",
    )
    heartbeat_seconds: float = Field(
        1.0,
        gt=0,
        le=30,
        description="How often a replica checks its lease and change-feed connections; "
        "a leader that loses its lease stops at once.",
    )
    takeover_grace_seconds: float = Field(
        2.0,
        ge=0,
        le=60,
        description="A new leader waits this long before dispatching, so that a leader "
        "cut off from the database has noticed and stopped.",
    )
    refresh_seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Full reload of the gate's snapshot from the database: the safety "
        "net behind the change notifications.",
    )
    max_staleness_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Past this long without a confirmed change feed, a replica's gate "
        "refuses (fails closed) instead of deciding on a snapshot that may be stale.",
    )

    @model_validator(mode="after")
    def _bound_above_heartbeat(self) -> ClusterConfig:
        if self.max_staleness_seconds <= 2 * self.heartbeat_seconds:
            raise ValueError(
                "max_staleness_seconds must exceed twice heartbeat_seconds, or a healthy "
                "replica would refuse between two heartbeats"
            )
        return self
