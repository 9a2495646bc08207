"""``DispatchState``: the bookkeeping every part of the dispatcher reads and writes.

The parts (``backlog``, ``readback``, ``rooms``, ``stuck``) are separate objects, but the
facts they decide from are one: which rooms hold which events, how many events are in
memory, how far the frontier is, which transactions are done. They are kept here, with
the small rules that read them (the cap, spilling, when a transaction is done, idleness),
so each rule exists once. ``reset`` clears them at ``start`` and ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable
from typing import Any, TypeVar

from bridge.ops.metrics import Metrics
from bridge.spine.dispatch.model import SLICE, Item, Room

T = TypeVar("T")

RECENT = 1024  # sequence numbers recently read in, so a late ``submit`` of one is ignored


class DispatchState:
    """Rooms, in-memory counts, the frontier and pending done marks, plus the wake-ups."""

    def __init__(
        self, metrics: Metrics, *, max_in_memory_events: int, room_limit: int | None
    ) -> None:
        self._metrics = metrics
        self.cap = max(1, max_in_memory_events)
        self.low_water = self.cap // 2
        self.room_limit = room_limit or max(SLICE, self.cap // 8)
        self.wake = asyncio.Event()  # set: the read loop has something to read
        self.idle = asyncio.Event()  # set: everything stored so far is handled and marked
        self.idle.set()
        self._db_calls: set[asyncio.Future[Any]] = set()
        self.reset()

    def reset(self) -> None:
        self.rooms: dict[str, Room] = {}
        self.spilled: dict[str, Room] = {}
        self.failing: dict[str, Room] = {}
        # Every transaction committed up to the frontier has been taken in (its events
        # queued, or left to their spilled rooms); none after it is in a room queue.
        self.frontier = 0
        self.db_mode = True  # the database may hold transactions after the frontier
        # Bumped by every ``Dispatcher.wake``: a wake during a read means the database
        # may hold more than that read saw (another replica stored a transaction).
        self.wakes = 0
        self.reading = False
        # While the database holds a backlog, transactions submitted meanwhile are kept
        # here (contiguous, at most a quarter of the cap) and taken in once the reads
        # reach them, so a backlog does not turn every later event into a read.
        self.tail: list[tuple[int, list[dict[str, Any]]]] = []
        self.tail_events = 0
        self.tail_open = True
        self.recent: deque[int] = deque(maxlen=RECENT)
        self.recent_set: set[int] = set()
        self.in_memory = 0  # events queued in rooms (the tail is counted apart)
        self.peak = 0
        self.done: list[int] = []  # transactions to mark done at the next flush
        # Done marks being committed: taken off ``done`` before their commit returns, so
        # idleness must wait for them too (on PostgreSQL the commit suspends, and a room
        # worker ending meanwhile would otherwise report idle with rows still pending).
        self.marking = 0

    # -- the cap ----------------------------------------------------------------------

    @property
    def held(self) -> int:
        """Events held in memory now (queued in rooms or kept in the tail)."""
        return self.in_memory + self.tail_events

    def fits(self, n: int) -> bool:
        """Whether ``n`` more events stay within the cap. When only failing rooms' head
        events are held, the next transaction is taken anyway, or nothing could move."""
        held = self.in_memory + self.tail_events
        if held == 0 or held + n <= self.cap:
            return True
        return self.in_memory == sum(len(r.queue) for r in self.failing.values())

    def note_peak(self) -> None:
        self.peak = max(self.peak, self.in_memory + self.tail_events)

    def remember(self, seq: int) -> None:
        """Note ``seq`` as read in, so a late ``submit`` of it is ignored."""
        if len(self.recent) == RECENT:
            self.recent_set.discard(self.recent[0])
        self.recent.append(seq)
        self.recent_set.add(seq)

    # -- spilled rooms ----------------------------------------------------------------

    def spill(self, room: Room, db_after: int) -> None:
        """Leave ``room``'s events after ``db_after`` to the database."""
        if room.spilled:
            room.db_after = min(room.db_after, db_after)
            return
        room.spilled = True
        room.db_after = db_after
        self.spilled[room.room_id] = room

    def unspill(self, room: Room) -> None:
        room.spilled = False
        self.spilled.pop(room.room_id, None)
        if not room.queue and room.worker is None:
            self.drop_room(room)

    def drop_room(self, room: Room) -> None:
        if self.rooms.get(room.room_id) is room:
            del self.rooms[room.room_id]

    def ready(self, room: Room) -> bool:
        """A spilled room that can take its stored events back now."""
        return room.failing_since is None and len(room.queue) <= self.room_limit // 2

    # -- done marks -------------------------------------------------------------------

    def item_done(self, item: Item) -> None:
        p = item.progress
        p.remaining -= 1
        if p.remaining == 0:
            self.txn_finished(item.txn_seq, p.others)

    def txn_finished(self, seq: int, others: frozenset[str]) -> None:
        """This part of the txn is handled: mark it done if every other room is past it."""
        if all(self._passed(room_id, seq) for room_id in others):
            self.done.append(seq)

    def _passed(self, room_id: str, seq: int) -> bool:
        """Whether ``room_id`` has handled all of its events in transactions up to ``seq``."""
        room = self.rooms.get(room_id)
        if room is None:
            return True
        if room.queue:
            return room.queue[0].txn_seq > seq
        if room.spilled:
            return room.db_after >= seq
        return True

    # -- wake-ups, idleness, gauges ---------------------------------------------------

    def maybe_wake(self) -> None:
        """Ask for a read once room queues have drained below half the cap."""
        if self.in_memory <= self.low_water and (self.db_mode or self.spilled):
            self.wake.set()

    def update_idle(self) -> None:
        if (
            not self.rooms
            and not self.db_mode
            and not self.reading
            and not self.wake.is_set()
            and not self.done
            and not self.marking
        ):
            self.idle.set()

    def gauge_memory(self) -> None:
        self._metrics.dispatch_in_memory.set(self.in_memory + self.tail_events)
        if not self.db_mode and not self.spilled:
            self._metrics.queue_depth.set(self.in_memory)

    # -- database calls ---------------------------------------------------------------

    async def db(self, call: Awaitable[T]) -> T:
        """Run a database call to its end even if this task is cancelled: on SQLite, a
        read cancelled half-way leaves its cursor open, and the shared connection then
        keeps reading an old snapshot (done marks written since would not be seen)."""
        fut = asyncio.ensure_future(call)
        self._db_calls.add(fut)
        fut.add_done_callback(self._db_calls.discard)
        return await asyncio.shield(fut)

    async def finish_db_calls(self) -> None:
        """Wait for the database calls still running (``stop``), ignoring their outcome."""
        for call in list(self._db_calls):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await call
