"""What this replica does as leader, and how it stops leading (docs/cluster.md).

Every replica serves the HTTP API; the one holding the lease also dispatches, runs the
scheduled jobs and the bot (its registration, its device). On SQLite the one process
leads from the start.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from bridge.app.cluster import ClusterParts
from bridge.audit.log import AuditLog
from bridge.gate.enforce import Enforcer
from bridge.matrix.bot_account import BotAccount
from bridge.ops.metrics import Metrics
from bridge.ops.scheduler import Scheduler
from bridge.spine.dispatch import Dispatcher
from bridge.spine.journaled import JournaledPending
from bridge.spine.pending import PendingStore
from bridge.spine.queue import EventQueueStore

log = logging.getLogger("santeguard")


class Device(Protocol):
    async def stop(self) -> None: ...


class Leadership:
    def __init__(
        self,
        cluster: ClusterParts,
        metrics: Metrics,
        audit: AuditLog,
        enforcer: Enforcer,
        dispatcher: Dispatcher,
        queue: EventQueueStore,
        scheduler: Scheduler,
        bot: BotAccount,
        device: Device | None,
    ) -> None:
        self._cluster = cluster
        self._metrics = metrics
        self._audit = audit
        self._enforcer = enforcer
        self._dispatcher = dispatcher
        self._queue = queue
        self._scheduler = scheduler
        self._bot = bot
        self._device = device

    async def lead(self) -> None:
        """This replica holds the lease: it dispatches, runs the jobs and the bot."""
        self._metrics.cluster_leader.set(1)
        if self._cluster.shared:
            log.info("Replica %s leads", self._cluster.replica_id)
            await self._audit.record(self._cluster.replica_id, "cluster.leader")
        await self._enforcer.recover()  # work the previous leader claimed is due again
        await self._dispatcher.start()
        self._scheduler.start()
        self._bot.start()

    async def lost(self) -> None:
        """The lease is lost: stop leading at once. The replica stays up as a follower
        (it serves the HTTP API, its gate fails closed while its snapshot is stale) and
        campaigns again; ``lead`` starts everything anew once it is elected."""
        self._metrics.cluster_leader.set(0)
        await self._bot.stop()
        await self._scheduler.stop()
        await self._dispatcher.stop()
        if self._device is not None:
            await self._device.stop()

    async def store(self, txn_id: str, body: bytes, event_count: int) -> int | None:
        """Store a transaction; a follower notifies the leader in the same statement."""
        notify = self._cluster.shared and not self._cluster.lease.leader
        return await self._queue.store_transaction(txn_id, body, event_count, notify=notify)

    async def begin_store(self, txn_id: str, body: bytes) -> PendingStore | JournaledPending | None:
        """Start storing a transaction before its body is parsed (``store``'s notify)."""
        notify = self._cluster.shared and not self._cluster.lease.leader
        return await self._queue.begin_store(txn_id, body, notify=notify)

    def stored(self, seq: int, events: list[dict[str, Any]]) -> None:
        """A transaction is committed. One process hands it over (saving a read); with
        replicas sharing the database, the leader reads every replica's transactions
        from it in sequence order, so this one's is read too (and never ahead of one a
        follower stored just before)."""
        if not self._cluster.shared:
            self._dispatcher.submit(seq, events)
        elif self._cluster.lease.leader:
            self._queue.remember(seq, events)  # read back by sequence number only
            self._dispatcher.wake_soon()

    def wake_dispatch(self) -> None:
        if self._cluster.shared and self._cluster.lease.leader:
            self._dispatcher.wake()

    async def feed_fresh(self) -> bool:
        """Readiness: a replica whose snapshot may be stale refuses, so it is not ready."""
        self._metrics.cluster_staleness.set(min(self._cluster.feed.staleness(), 1e9))
        return not self._cluster.feed.stale
