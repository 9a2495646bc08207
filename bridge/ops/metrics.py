"""Prometheus metrics, held per instance (own ``CollectorRegistry``) so that several
SantéGuard instances in one process — as in the test suite — never share counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

KNOWN_EVENT_TYPES = frozenset(
    {
        "m.room.message",
        "m.room.encrypted",
        "m.room.member",
        "m.room.encryption",
        "m.room.power_levels",
        "m.room.create",
        "m.room.name",
        "m.room.topic",
        "m.room.join_rules",
        "m.room.history_visibility",
        "m.room.redaction",
        "m.reaction",
    }
)


class Metrics:
    """All of SantéGuard's metrics. Label values are bounded (no user input in labels)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.transactions = Counter(
            "santeguard_transactions_total",
            "Homeserver transactions received, by outcome (stored, replayed).",
            ["outcome"],
            registry=r,
        )
        self.events = Counter(
            "santeguard_events_total",
            "Events received in transactions, by type (unknown types counted as 'other').",
            ["type"],
            registry=r,
        )
        self.rejected = Counter(
            "santeguard_rejected_requests_total",
            "Requests refused with a 4xx, by errcode and reason.",
            ["errcode", "reason"],
            registry=r,
        )
        self.handled = Counter(
            "santeguard_events_handled_total",
            "Events handled from the durable queue, by outcome (done, retry, failed).",
            ["outcome"],
            registry=r,
        )
        self.handler_latency = Histogram(
            "santeguard_handler_latency_seconds",
            "Time spent handling one event from the queue.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.ack_latency = Histogram(
            "santeguard_transaction_ack_seconds",
            "Time from request to ack of a transaction (includes the durable commit).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
            registry=r,
        )
        self.queue_depth = Gauge(
            "santeguard_queue_depth",
            "Events stored but not yet handled.",
            registry=r,
        )
        self.dispatch_in_memory = Gauge(
            "santeguard_dispatch_in_memory_events",
            "Events held in memory by the dispatcher (at most dispatch.max_in_memory_events; "
            "the database holds the rest).",
            registry=r,
        )
        self.dispatch_backoff_rooms = Gauge(
            "santeguard_dispatch_backoff_rooms",
            "Rooms whose next event is failing and waits to be retried.",
            registry=r,
        )
        self.dispatch_stuck_rooms = Gauge(
            "santeguard_dispatch_stuck_rooms",
            "Rooms whose next event has been failing for longer than "
            "dispatch.stuck_after_seconds (listed in /ready).",
            registry=r,
        )
        self.dispatch_stuck_episodes = Counter(
            "santeguard_dispatch_stuck_episodes_total",
            "Times a room became stuck (one per episode, as alerted).",
            registry=r,
        )
        self.dispatch_spilled_rooms = Gauge(
            "santeguard_dispatch_spilled_rooms",
            "Rooms whose later events wait in the database, to be read back in order.",
            registry=r,
        )
        self.dispatch_reads = Counter(
            "santeguard_dispatch_database_reads_total",
            "Reads of stored transactions by the dispatcher (backlog beyond the memory cap, "
            "rooms catching up, start).",
            registry=r,
        )
        self.events_abandoned = Counter(
            "santeguard_events_abandoned_total",
            "Events given up because their dead letter could not be written either "
            "(logged at ERROR by event ID; also counted as failed).",
            registry=r,
        )
        self.antispam = Counter(
            "santeguard_antispam_requests_total",
            "Synchronous gate callbacks answered, by callback and decision.",
            ["callback", "decision"],
            registry=r,
        )

        self.job_runs = Counter(
            "santeguard_job_runs_total",
            "Scheduled job runs, by job and outcome (ok, failed).",
            ["job", "outcome"],
            registry=r,
        )
        self.job_duration = Histogram(
            "santeguard_job_duration_seconds",
            "Duration of successful scheduled job runs.",
            ["job"],
            buckets=(0.001, 0.01, 0.1, 1, 10, 60, 600),
            registry=r,
        )
        self.job_last_success = Gauge(
            "santeguard_job_last_success_timestamp_seconds",
            "When each scheduled job last succeeded (Unix time).",
            ["job"],
            registry=r,
        )

        self.cluster_leader = Gauge(
            "santeguard_cluster_leader",
            "1 on the replica that holds the leader's lease (dispatch, jobs, the bot's "
            "device), 0 on a follower.",
            registry=r,
        )
        self.cluster_staleness = Gauge(
            "santeguard_cluster_staleness_seconds",
            "Seconds since this replica's change feed was last confirmed.",
            registry=r,
        )
        self.stale_refusals = Counter(
            "santeguard_cluster_stale_refusals_total",
            "Gate callbacks refused because the replica's snapshot may be stale.",
            ["callback"],
            registry=r,
        )

    def count_event_types(self, events: list[dict[str, object]]) -> None:
        """Count a transaction's events by type: one labelled increment per distinct type."""
        counts: dict[str, int] = {}
        for ev in events:
            t = ev["type"]
            label = t if isinstance(t, str) and t in KNOWN_EVENT_TYPES else "other"
            counts[label] = counts.get(label, 0) + 1
        for label, n in counts.items():
            self.events.labels(type=label).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
