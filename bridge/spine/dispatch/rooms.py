"""``RoomWorkers``: one worker per room handles its queue strictly in order.

At most ``max_concurrent_rooms`` workers hold a slot at a time, and a worker holds its
slot only while it calls handlers (up to ``SLICE`` events, then it yields the loop); all
workers share a time budget per turn of the event loop (``TurnBudget``), so an ack is
not queued behind every room's slice. A failing event is retried with backoff *outside*
the slot, so rooms that cannot be served do not keep the others waiting; its room keeps
only that event's transaction in memory and leaves its later events to the database
(spilled). A ``TransientError`` is retried with capped backoff without using up
attempts; any other error is retried ``max_attempts`` times, then the event is
dead-lettered (``dead_letter``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

from bridge.core.errors import TransientError
from bridge.db.replay import replayable
from bridge.ops.metrics import Metrics
from bridge.spine.dispatch.dead_letter import DeadLetters, safe
from bridge.spine.dispatch.model import (
    DEAD_LETTER,
    ERROR,
    SLICE,
    UNAVAILABLE,
    Backoff,
    EventHandler,
    Item,
    QueueStore,
    Room,
)
from bridge.spine.dispatch.state import DispatchState
from bridge.spine.dispatch.stuck import StuckWatch

log = logging.getLogger("santeguard.dispatch")

# Longest a room worker steps aside for a stream of transactions before it handles a
# slice anyway. A stream is a homeserver sending its backlog (after an outage, a burst):
# every event of it is stored, and so safe, before it is handled, and the total work is
# the same, so acks come first and each room still gets a turn this often. Measured
# (bench.transactions, production traffic): 0.23-0.25 of the bare handler's rate with
# 50 ms, 0.26-0.39 with 0.5 s, the drained rate no lower. A lone transaction is handled
# at once (the grace is 2 ms); the synchronous gate does not wait for the dispatcher.
MAX_STEP_ASIDE_S = 0.5
# Handler time all room workers together may take in one turn of the event loop.
TURN_BUDGET_S = 0.0005


class TurnBudget:
    """Bounds the handlers' time per turn of the event loop, shared by every room worker.

    asyncio runs every callback that was ready when a turn began before it looks at the
    sockets again, and a handler that never suspends (most of the traffic: megolm events
    that call for nothing) runs without giving the loop back. Without a shared bound, ten
    rooms' slices would all run before an incoming ack request is even read. Once the
    budget is spent, workers stop at their next event; the budget is renewed one turn
    later, *after* the callbacks of that turn's I/O (an ack's bytes), so those run first.
    """

    def __init__(self, seconds: float = TURN_BUDGET_S) -> None:
        self._seconds = seconds
        self._deadline: float | None = None
        self._renewing = False

    def spent(self) -> bool:
        now = time.perf_counter()
        if self._deadline is None:
            self._deadline = now + self._seconds
            return False
        if now < self._deadline:
            return False
        if not self._renewing:
            self._renewing = True
            # Queued next turn, from where it is queued behind that turn's I/O callbacks.
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, self._renew)
        return True

    def _renew(self) -> None:
        self._deadline = None
        self._renewing = False


# What one try of a room's head event came to.
_DONE: Final = "done"
_DEAD: Final = "dead"  # dead-lettered or given up: the room moves on
_RETRY: Final = "retry"


class RoomWorkers:
    """Runs rooms' queues (``run``, one task per room), sharing the slots."""

    def __init__(
        self,
        state: DispatchState,
        store: QueueStore,
        handler: EventHandler,
        metrics: Metrics,
        stuck: StuckWatch,
        *,
        max_concurrent_rooms: int,
        max_attempts: int,
        backoff: Backoff,
    ) -> None:
        self._state = state
        self._handler = handler
        self._metrics = metrics
        self._stuck = stuck
        self._sem = asyncio.Semaphore(max_concurrent_rooms)
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._count_done = metrics.handled.labels(outcome="done")
        self._count_retry = metrics.handled.labels(outcome="retry")
        self._dead_letters = DeadLetters(store, metrics, state.db, backoff)
        self._intake = store.intake
        self._budget = TurnBudget()

    async def run(self, room: Room) -> None:
        """The room's worker: handle its queue until it is empty."""
        st = self._state
        queue = room.queue
        intake = self._intake
        budget = self._budget
        try:
            while queue:
                delay = 0.0
                # Ingest first: while an intake commit is in flight, handlers wait (see
                # IntakeActivity). A slice of up to SLICE events per slot hold, then
                # yield, so acks and other rooms get the loop between slices. A failing
                # event gives its slot back while it waits to be retried.
                forced = intake.busy and not await intake.wait_idle(MAX_STEP_ASIDE_S)
                async with self._sem:
                    n = handled = 0
                    while (
                        queue
                        and n < SLICE
                        and (forced or not intake.busy)
                        and (n == 0 or not budget.spent())
                    ):
                        item = queue[0]
                        outcome = await self._attempt(room, item)
                        if outcome == _RETRY:
                            delay = room.delay
                            break
                        queue.popleft()
                        n += 1
                        st.in_memory -= 1
                        if outcome == _DONE:
                            handled += 1
                        self._end_failure(room)
                        st.item_done(item)
                    self._count_done.inc(handled)
                st.gauge_memory()
                st.maybe_wake()
                await asyncio.sleep(delay)
        finally:
            room.worker = None
            if not room.queue:
                if room.spilled:
                    st.wake.set()
                else:
                    st.drop_room(room)
            st.update_idle()

    async def _attempt(self, room: Room, item: Item) -> str:
        """Try the head event once: _DONE, _DEAD (dead-lettered or given up) or _RETRY."""
        if room.dead_error is not None:
            return await self._dead_letter(room, item)
        ev = item.event
        start = time.perf_counter()
        try:
            with replayable():  # what it writes, a replay writes again (bridge.db.replay)
                acted = await self._handler(ev)
        except asyncio.CancelledError:
            raise
        except TransientError as e:
            room.outage += 1
            delay = self._backoff(room.outage)
            log.warning(
                "Dependency unavailable while handling %s (%s) in %s (%s); retrying in %.1f s",
                safe(ev.get("event_id")),
                safe(ev.get("type")),
                safe(room.room_id),
                safe(e, 300),
                delay,
            )
            self._failed(room, UNAVAILABLE, delay)
            return _RETRY
        except Exception as e:
            room.attempts += 1
            first, final = room.attempts == 1, room.attempts >= self._max_attempts
            log.warning(
                "Handling %s (%s) in %s failed (attempt %d/%d): %s",
                safe(ev.get("event_id")),
                safe(ev.get("type")),
                safe(room.room_id),
                room.attempts,
                self._max_attempts,
                safe(f"{type(e).__name__}: {e}", 300),
                exc_info=first or final,
            )
            if final:
                room.dead_error = safe(f"{type(e).__name__}: {e}", 500)
                return await self._dead_letter(room, item)
            self._failed(room, ERROR, self._backoff(room.attempts))
            return _RETRY
        if acted or room.failing_since is not None:
            self._metrics.handler_latency.observe(time.perf_counter() - start)
        return _DONE

    async def _dead_letter(self, room: Room, item: Item) -> str:
        delay = await self._dead_letters.write(room, item)
        if delay is None:
            return _DEAD
        self._failed(room, DEAD_LETTER, delay)
        return _RETRY

    def _failed(self, room: Room, kind: str, delay: float) -> None:
        """The head event failed and will be retried after ``delay``, outside the slot."""
        now = time.monotonic()
        self._stuck.failed(room, kind, now)
        room.delay = delay
        self._count_retry.inc()
        self._evict(room)
        self._stuck.check(room, now)

    def _evict(self, room: Room) -> None:
        """Leave a failing room's later transactions to the database (read back later)."""
        st = self._state
        queue = room.queue
        if not queue:
            return
        head_seq = queue[0].txn_seq
        keep = 1
        while keep < len(queue) and queue[keep].txn_seq == head_seq:
            keep += 1
        if keep == len(queue):
            return
        evicted = [queue.pop() for _ in range(len(queue) - keep)]
        st.in_memory -= len(evicted)
        st.spill(room, min(it.txn_seq for it in evicted) - 1)
        counts: dict[int, tuple[Item, int]] = {}
        for it in evicted:
            first, k = counts.get(id(it.progress), (it, 0))
            counts[id(it.progress)] = (first, k + 1)
        for it, k in counts.values():
            p = it.progress
            p.remaining -= k
            p.others = p.others | {room.room_id}
            if p.remaining == 0:
                st.txn_finished(it.txn_seq, p.others)

    def _end_failure(self, room: Room) -> None:
        """The head event is handled (or dead-lettered): its failure episode ends."""
        room.attempts = room.outage = room.dl_failures = room.retries = 0
        room.dead_error = None
        if self._stuck.served(room) and room.spilled:
            self._state.wake.set()
