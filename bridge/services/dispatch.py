"""Per-room ordered dispatch of stored events, with bounded concurrency across rooms.

Events come from the durable queue only (never straight from the HTTP request), so what
was acked is handled after a crash too. Within a room events are handled strictly in
order; a failing event is retried with backoff while its room waits, and after
``max_attempts`` it is marked ``failed`` (kept, counted and logged, never silently
dropped) so one poisoned event cannot block a room forever. A ``TransientError`` (the
homeserver is down, say) is retried with capped backoff without using up attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..db.queue import QueuedEvent
from ..metrics import Metrics
from .errors import TransientError

log = logging.getLogger("santeguard.dispatch")

EventHandler = Callable[[QueuedEvent], Awaitable[None]]


class QueueStore(Protocol):
    async def expand_pending(self, limit: int = 100) -> int: ...
    async def pending_events(self, after_seq: int, limit: int = 1000) -> list[QueuedEvent]: ...
    async def mark_done(self, seq: int) -> None: ...
    async def mark_attempt(self, seq: int, error: str, *, final: bool) -> None: ...
    async def has_unexpanded(self) -> bool: ...


class Dispatcher:
    """Pulls events from the store and runs ``handler`` on them, ordered per room."""

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
    ) -> None:
        self._max_backoff = max_backoff_seconds
        self._store = store
        self._handler = handler
        self._metrics = metrics
        self._sem = asyncio.Semaphore(max_concurrent_rooms)
        self._max_attempts = max_attempts
        self._retry_base = retry_base_seconds
        self._wake = asyncio.Event()
        self._rooms: dict[str, deque[QueuedEvent]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._last_seq = 0
        self._in_memory = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        """Signal that a new transaction was stored."""
        self._idle.clear()
        self._wake.set()

    @property
    def in_memory(self) -> int:
        return self._in_memory

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="santeguard-dispatch")
        self.wake()

    async def stop(self) -> None:
        self._stopping = True
        tasks = [t for t in (self._task, *self._workers.values()) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._task = None
        self._workers.clear()
        self._rooms.clear()
        self._in_memory = 0

    async def wait_idle(self, timeout: float = 10) -> None:
        """Wait until everything stored so far has been handled (tests, shutdown)."""
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
                log.exception("Dispatcher could not read the queue; retrying in 1 s")
                await asyncio.sleep(1)
                self._wake.set()
                continue
            self._update_idle()

    async def _pull(self) -> None:
        while await self._store.has_unexpanded():
            await self._store.expand_pending(100)
        while True:
            batch = await self._store.pending_events(self._last_seq)
            if not batch:
                break
            for ev in batch:
                self._last_seq = max(self._last_seq, ev.seq)
                self._rooms.setdefault(ev.room_id, deque()).append(ev)
                self._in_memory += 1
                if ev.room_id not in self._workers:
                    self._workers[ev.room_id] = asyncio.create_task(
                        self._room_worker(ev.room_id), name=f"santeguard-room-{ev.room_id}"
                    )
        self._metrics.queue_depth.set(self._in_memory)

    def _update_idle(self) -> None:
        if not self._workers and not self._wake.is_set():
            self._idle.set()

    async def _room_worker(self, room_id: str) -> None:
        queue = self._rooms[room_id]
        try:
            while queue:
                ev = queue[0]
                async with self._sem:
                    await self._handle_with_retries(ev)
                queue.popleft()
                self._in_memory -= 1
                self._metrics.queue_depth.set(self._in_memory)
        finally:
            self._workers.pop(room_id, None)
            if not queue:
                self._rooms.pop(room_id, None)
            self._update_idle()

    async def _handle_with_retries(self, ev: QueuedEvent) -> None:
        attempts = ev.attempts
        outage = 0
        while True:
            start = time.perf_counter()
            try:
                await self._handler(ev)
            except asyncio.CancelledError:
                raise
            except TransientError as e:
                outage += 1
                delay = min(self._max_backoff, self._retry_base * 2 ** min(outage - 1, 10))
                log.warning(
                    "Dependency unavailable while handling %s (%s); retrying in %.1f s",
                    ev.event_id, e, delay,
                )
                self._metrics.handled.labels(outcome="retry").inc()
                await asyncio.sleep(delay)
                continue
            except Exception as e:
                attempts += 1
                final = attempts >= self._max_attempts
                log.exception(
                    "Handling %s (%s) in %s failed (attempt %d/%d)",
                    ev.event_id, ev.event_type, ev.room_id, attempts, self._max_attempts,
                )
                await self._store.mark_attempt(ev.seq, f"{type(e).__name__}: {e}", final=final)
                self._metrics.handled.labels(outcome="failed" if final else "retry").inc()
                if final:
                    return
                await asyncio.sleep(self._retry_base * 2 ** (attempts - 1))
                continue
            finally:
                self._metrics.handler_latency.observe(time.perf_counter() - start)
            await self._store.mark_done(ev.seq)
            self._metrics.handled.labels(outcome="done").inc()
            return
