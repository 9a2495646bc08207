"""Per-room ordered dispatch of stored events, with bounded concurrency across rooms.

Events are handled only once their transaction is committed: the intake hands the
committed transaction over in memory (``submit``), and at start the dispatcher reads
back whatever was stored but not done, so what was acked is handled after a crash too.
Within a room events are handled strictly in order; a failing event is retried with
backoff while its room waits, and after ``max_attempts`` it goes to the dead-letter
table (kept, counted and logged, never silently dropped) so one poisoned event cannot
block a room forever. A
``TransientError`` (the homeserver is down, say) is retried with capped backoff without
using up attempts.

A transaction is marked done once all its events are handled; those marks are written
in batches (one commit per ``done_flush_seconds``). After a crash, the events of
transactions not yet marked done are handled again: handlers with side effects are
idempotent (they key their effects on the event ID).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.core.errors import TransientError
from bridge.ops.metrics import Metrics
from bridge.spine.queue import StoredTxn

log = logging.getLogger("santeguard.dispatch")

# Returns True when the event called for work (its latency is then recorded).
EventHandler = Callable[[dict[str, Any]], Awaitable[bool]]
SLICE = 64


class QueueStore(Protocol):
    async def pending(self, after_seq: int, limit: int = 50) -> list[StoredTxn]: ...
    async def mark_done(self, seqs: list[int]) -> None: ...
    async def dead_letter(
        self, txn_seq: int, event: dict[str, Any], attempts: int, error: str
    ) -> None: ...


@dataclass(slots=True)
class _TxnProgress:
    remaining: int


@dataclass(slots=True)
class _Item:
    txn_seq: int
    event: dict[str, Any]
    progress: _TxnProgress = field(repr=False)


class Dispatcher:
    """Pulls stored transactions and runs ``handler`` on their events, ordered per room."""

    def __init__(
        self,
        store: QueueStore,
        handler: EventHandler,
        metrics: Metrics,
        *,
        max_concurrent_rooms: int = 8,
        max_attempts: int = 5,
        retry_base_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
        done_flush_seconds: float = 0.02,
    ) -> None:
        self._store = store
        self._handler = handler
        self._metrics = metrics
        self._sem = asyncio.Semaphore(max_concurrent_rooms)
        self._max_attempts = max_attempts
        self._retry_base = retry_base_seconds
        self._max_backoff = max_backoff_seconds
        self._flush_every = done_flush_seconds
        self._wake = asyncio.Event()
        self._rooms: dict[str, deque[_Item]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._last_seq = 0
        self._in_memory = 0
        self._done: list[int] = []
        self._known: set[int] = set()  # enqueued, or done but not yet flushed
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._count_done = metrics.handled.labels(outcome="done")
        self._count_retry = metrics.handled.labels(outcome="retry")
        self._count_failed = metrics.handled.labels(outcome="failed")

    def wake(self) -> None:
        """Ask for a read of stored-but-pending transactions (start, recovery)."""
        self._idle.clear()
        self._wake.set()

    def submit(self, seq: int, events: list[dict[str, Any]]) -> None:
        """Hand over a just-committed transaction, saving a read of its body."""
        self._idle.clear()
        self._accept(seq, events)
        self._update_idle()

    def _accept(self, seq: int, events: list[dict[str, Any]]) -> None:
        if seq in self._known:
            return
        self._known.add(seq)
        if not events:
            self._done.append(seq)
            return
        progress = _TxnProgress(len(events))
        for event in events:
            self._enqueue(_Item(seq, event, progress))
        self._metrics.queue_depth.set(self._in_memory)

    @property
    def in_memory(self) -> int:
        return self._in_memory

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="santeguard-dispatch")
        self._flush_task = asyncio.create_task(self._flush_loop(), name="santeguard-done")
        self.wake()

    async def stop(self) -> None:
        self._stopping = True
        tasks = [t for t in (self._task, self._flush_task, *self._workers.values()) if t]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self._flush()
        self._task = None
        self._flush_task = None
        self._workers.clear()
        self._rooms.clear()
        self._known.clear()
        self._in_memory = 0

    async def wait_idle(self, timeout: float = 10) -> None:
        """Wait until everything stored so far is handled and marked done."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def _run(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._pull()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Dispatcher could not read stored transactions; retrying in 1 s")
                await asyncio.sleep(1)
                self._wake.set()
                continue
            self._update_idle()

    async def _pull(self) -> None:
        limit = 50
        while True:
            batch = await self._store.pending(self._last_seq, limit)
            for txn in batch:
                self._last_seq = max(self._last_seq, txn.seq)
                self._accept(txn.seq, txn.events)
            if len(batch) < limit:
                break
        self._metrics.queue_depth.set(self._in_memory)

    def _enqueue(self, item: _Item) -> None:
        room_id = str(item.event.get("room_id"))
        self._rooms.setdefault(room_id, deque()).append(item)
        self._in_memory += 1
        if room_id not in self._workers:
            self._workers[room_id] = asyncio.create_task(
                self._room_worker(room_id), name=f"santeguard-room-{room_id}"
            )

    def _update_idle(self) -> None:
        if not self._workers and not self._wake.is_set() and not self._done:
            self._idle.set()

    async def _flush(self) -> None:
        if not self._done:
            return
        batch, self._done = self._done, []
        try:
            await self._store.mark_done(batch)
        except Exception:
            log.exception("Could not mark %d transactions done; will retry", len(batch))
            self._done = batch + self._done
            return
        self._known.difference_update(batch)
        self._update_idle()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_every)
            await self._flush()

    async def _room_worker(self, room_id: str) -> None:
        queue = self._rooms[room_id]
        try:
            while queue:
                # A slice of up to SLICE events per semaphore hold, then yield, so the
                # intake (acks) and other rooms get the loop between slices.
                async with self._sem:
                    n = done = 0
                    while queue and n < SLICE:
                        item = queue[0]
                        done += await self._handle_with_retries(item)
                        queue.popleft()
                        n += 1
                        item.progress.remaining -= 1
                        if item.progress.remaining == 0:
                            self._done.append(item.txn_seq)
                    self._in_memory -= n
                    self._metrics.queue_depth.set(self._in_memory)
                    self._count_done.inc(done)
                await asyncio.sleep(0)
        finally:
            self._workers.pop(room_id, None)
            if not queue:
                self._rooms.pop(room_id, None)
            self._update_idle()

    async def _handle_with_retries(self, item: _Item) -> bool:
        """Handle one event; True once done, False if it went to the dead letters."""
        ev = item.event
        attempts = 0
        outage = 0
        while True:
            start = time.perf_counter()
            try:
                acted = await self._handler(ev)
            except asyncio.CancelledError:
                raise
            except TransientError as e:
                outage += 1
                delay = min(self._max_backoff, self._retry_base * 2 ** min(outage - 1, 10))
                log.warning(
                    "Dependency unavailable while handling %s (%s); retrying in %.1f s",
                    ev.get("event_id"),
                    e,
                    delay,
                )
                self._count_retry.inc()
                await asyncio.sleep(delay)
                continue
            except Exception as e:
                attempts += 1
                final = attempts >= self._max_attempts
                log.exception(
                    "Handling %s (%s) in %s failed (attempt %d/%d)",
                    ev.get("event_id"),
                    ev.get("type"),
                    ev.get("room_id"),
                    attempts,
                    self._max_attempts,
                )
                if final:
                    await self._dead_letter(item, attempts, f"{type(e).__name__}: {e}")
                    self._count_failed.inc()
                    return False
                self._count_retry.inc()
                await asyncio.sleep(self._retry_base * 2 ** (attempts - 1))
                continue
            if acted or attempts or outage:
                self._metrics.handler_latency.observe(time.perf_counter() - start)
            return True  # counted as done once per slice

    async def _dead_letter(self, item: _Item, attempts: int, error: str) -> None:
        while True:
            try:
                await self._store.dead_letter(item.txn_seq, item.event, attempts, error)
                return
            except Exception:
                log.exception("Could not record dead letter; retrying in 1 s")
                await asyncio.sleep(1)
