"""``Backlog``: taking transactions in, within the in-memory cap.

A transaction goes to its rooms' queues while it fits; past the cap the database keeps it
and ``readback`` reads it in later, in order. Meanwhile transactions submitted are kept
in a short *tail* (contiguous, at most a quarter of the cap), taken in once the reads
reach it, so a backlog does not turn every later event into a read. A room that is
failing, or holds its share of the cap already, is *spilled*: its events stay in the
database while the frontier moves on for every other room.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from bridge.spine.dispatch.model import Item, Room, TxnProgress
from bridge.spine.dispatch.state import DispatchState

# Runs a room's queue until it is empty (``RoomWorkers.run``).
RoomWorker = Callable[[Room], Coroutine[Any, Any, None]]


class Backlog:
    """Puts transactions' events in their rooms' queues, or leaves them to the database."""

    def __init__(self, state: DispatchState, worker: RoomWorker) -> None:
        self._state = state
        self._worker = worker

    def submit(self, seq: int, events: list[dict[str, Any]]) -> None:
        """Take in a just-committed transaction if it fits, else note the database has it."""
        st = self._state
        st.idle.clear()
        if seq in st.recent_set:
            pass  # already read from the database
        elif seq <= st.frontier:
            self.dispatch(seq, events, late=True)
        elif not st.db_mode and st.fits(len(events)):
            self.dispatch(seq, events)
            st.frontier = seq
        else:
            st.db_mode = True
            n = len(events)
            if (st.tail_open or not st.tail) and st.tail_events + n <= st.cap // 4 and st.fits(n):
                st.tail.append((seq, events))
                st.tail_events += n
                st.tail_open = True
                st.note_peak()
            elif st.tail:
                st.tail_open = False  # left to the database: the tail stays contiguous
            # Not a plain wake: while the room queues hold more than half the cap the
            # reader would only wake to find it cannot read, once per transaction of a
            # stream; the room workers wake it once they have drained below that.
            st.maybe_wake()
        st.gauge_memory()
        st.update_idle()

    def dispatch(self, seq: int, events: list[dict[str, Any]], *, late: bool = False) -> None:
        """Take in a transaction not seen before: its events go to their rooms' queues,
        except those of rooms that wait in the database (spilled), which stay there."""
        st = self._state
        if not events:
            st.done.append(seq)
            return
        by_room: dict[str, list[dict[str, Any]]] = {}
        for ev in events:
            by_room.setdefault(str(ev.get("room_id")), []).append(ev)
        taken: list[tuple[Room, list[dict[str, Any]]]] = []
        left: set[str] = set()
        for room_id, evs in by_room.items():
            room = st.rooms.get(room_id)
            if room is not None and room.spilled and room.db_after < seq:
                left.add(room_id)
                continue
            if (
                not late
                and room is not None
                and (
                    room.failing_since is not None
                    or (room.queue and len(room.queue) + len(evs) > st.room_limit)
                )
            ):
                st.spill(room, seq - 1)
                left.add(room_id)
                continue
            if room is None:
                room = st.rooms[room_id] = Room(room_id)
            taken.append((room, evs))
        if taken:
            self.enqueue(seq, taken, frozenset(left))
        # else: every event waits for its room to read it back; the last one marks it.

    def enqueue(
        self, seq: int, taken: list[tuple[Room, list[dict[str, Any]]]], others: frozenset[str]
    ) -> None:
        """Queue ``taken`` events of transaction ``seq``; ``others`` hold the rest of it."""
        st = self._state
        progress = TxnProgress(sum(len(evs) for _, evs in taken), others)
        for room, evs in taken:
            for ev in evs:
                room.queue.append(Item(seq, ev, progress))
            st.in_memory += len(evs)
            if room.worker is None:
                room.worker = asyncio.create_task(self._worker(room), name="santeguard-room-worker")
        st.note_peak()

    def take_tail(self, seen: set[int], complete: bool) -> bool:
        """After a database-mode read: take in the tail once the reads have reached it,
        and leave database mode when nothing is left in the database only."""
        st = self._state
        progressed = False
        tail = sorted(st.tail, key=lambda t: t[0])
        st.tail = []
        st.tail_events = 0
        keep: list[tuple[int, list[dict[str, Any]]]] = []
        for seq, events in tail:
            if keep:
                keep.append((seq, events))
            elif seq in seen or seq in st.recent_set:
                progressed = True  # the read had it
            elif seq <= st.frontier:  # committed after a later one; not in the read
                self.dispatch(seq, events, late=True)
                progressed = True
            elif complete and st.fits(len(events)):
                self.dispatch(seq, events)
                st.frontier = seq
                progressed = True
            else:
                keep.append((seq, events))
        st.tail = keep
        st.tail_events = sum(len(events) for _, events in keep)
        if complete and not keep:
            if st.tail_open:
                st.db_mode = False  # nothing was left to the database: back to submit
            st.tail_open = True
            progressed = True
        return progressed
