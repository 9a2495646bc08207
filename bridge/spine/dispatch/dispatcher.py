"""``Dispatcher``: the one object the application holds for dispatching stored events.

It owns the lifecycle (``start``, ``stop``, ``wait_idle``) and the done marks, and hands
each job to a part built around the shared ``DispatchState``: ``Backlog`` takes
transactions in, ``ReadBack`` reads the backlog back from the database, ``RoomWorkers``
handle rooms' queues, ``StuckWatch`` reports rooms that cannot be served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from bridge.ops.metrics import Metrics
from bridge.spine.dispatch.backlog import Backlog
from bridge.spine.dispatch.model import Backoff, EventHandler, OnStuck, QueueStore, StuckRoom
from bridge.spine.dispatch.readback import ReadBack
from bridge.spine.dispatch.rooms import RoomWorkers
from bridge.spine.dispatch.state import DispatchState
from bridge.spine.dispatch.stuck import StuckWatch

log = logging.getLogger("santeguard.dispatch")


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
        max_in_memory_events: int = 10_000,
        room_limit: int | None = None,
        stuck_after_seconds: float = 300.0,
        on_stuck: OnStuck | None = None,
    ) -> None:
        self._store = store
        self._flush_every = done_flush_seconds
        self._state = DispatchState(
            metrics, max_in_memory_events=max_in_memory_events, room_limit=room_limit
        )
        self._stuck = StuckWatch(
            self._state,
            store,
            metrics,
            stuck_after_seconds=stuck_after_seconds,
            on_stuck=on_stuck,
        )
        self._rooms = RoomWorkers(
            self._state,
            store,
            handler,
            metrics,
            self._stuck,
            max_concurrent_rooms=max_concurrent_rooms,
            max_attempts=max_attempts,
            backoff=Backoff(retry_base_seconds, max_backoff_seconds),
        )
        self._backlog = Backlog(self._state, self._rooms.run)
        self._readback = ReadBack(self._state, self._backlog, store, metrics)
        self._task: asyncio.Task[None] | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None

    def _reset(self) -> None:
        self._state.reset()
        self._stuck.reset()

    # -- intake side ----------------------------------------------------------------

    def wake(self) -> None:
        """Ask for a read of stored-but-pending transactions (start, recovery)."""
        st = self._state
        st.idle.clear()
        st.db_mode = True
        st.wakes += 1
        st.wake.set()

    def wake_soon(self) -> None:
        """The database holds new transactions to read (the leader of several replicas,
        which reads every transaction back): wake the reader now if it can read, else
        once the room queues have drained below half the cap. A stream of transactions
        past the cap woke it once per transaction, each time for nothing."""
        st = self._state
        st.idle.clear()
        st.db_mode = True
        st.wakes += 1  # a read under way reads again: it may have missed this one
        st.maybe_wake()

    def submit(self, seq: int, events: list[dict[str, Any]]) -> None:
        """Hand over a just-committed transaction, saving a read of its body.

        Never holds more than ``max_in_memory_events``: past the cap, the transaction is
        left to the database and read back later, in order.
        """
        self._backlog.submit(seq, events)

    @property
    def in_memory(self) -> int:
        """Events held in memory now (queued in rooms or kept in the tail)."""
        return self._state.held

    @property
    def in_memory_peak(self) -> int:
        """The most events held in memory at once since start."""
        return self._state.peak

    @property
    def max_in_memory_events(self) -> int:
        return self._state.cap

    def stuck_rooms(self) -> list[StuckRoom]:
        """Rooms whose next event has failed for longer than ``stuck_after_seconds``."""
        return self._stuck.stuck_rooms()

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._reset()
        self._task = asyncio.create_task(self._readback.run(), name="santeguard-dispatch")
        self._flush_task = asyncio.create_task(self._flush_loop(), name="santeguard-done")
        self._watch_task = asyncio.create_task(self._stuck.run(), name="santeguard-stuck")
        self.wake()

    async def stop(self) -> None:
        st = self._state
        workers = [r.worker for r in st.rooms.values() if r.worker is not None]
        tasks = [
            t
            for t in (self._task, self._flush_task, self._watch_task, *workers, *self._stuck.alerts)
            if t is not None
        ]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await st.finish_db_calls()
        await self._flush()
        self._task = self._flush_task = self._watch_task = None
        self._stuck.alerts.clear()
        self._reset()
        st.db_mode = False
        st.gauge_memory()

    async def wait_idle(self, timeout: float = 10) -> None:
        """Wait until everything stored so far is handled and marked done."""
        await asyncio.wait_for(self._state.idle.wait(), timeout)

    # -- done marks -------------------------------------------------------------------

    async def _flush(self) -> None:
        """Mark the handled transactions done, in one commit (``done_flush_seconds``)."""
        st = self._state
        if not st.done:
            return
        batch, st.done = st.done, []
        st.marking += 1
        try:
            await self._store.mark_done(batch)
        except asyncio.CancelledError:
            st.done = batch + st.done  # stop() flushes them again (idempotent)
            raise
        except Exception:
            log.exception("Could not mark %d transactions done; will retry", len(batch))
            st.done = batch + st.done
            return
        finally:
            st.marking -= 1
        st.update_idle()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_every)
            await self._flush()
