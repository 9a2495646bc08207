"""``ReadBack``: reading stored transactions back from the database, in sequence order.

Two kinds of read share one loop: in database mode, the transactions after the frontier
(while they fit, then the tail), and *catch-up* for spilled rooms, whose stored events
after ``Room.db_after`` (up to the frontier) they take back once their failing event is
handled. One read serves every room catching up, and the rooms' own marks keep each
event taken in exactly once. Reads happen once room queues drain below half the cap.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bridge.ops.metrics import Metrics
from bridge.spine.dispatch.backlog import Backlog
from bridge.spine.dispatch.model import QueueStore, Room
from bridge.spine.dispatch.state import DispatchState
from bridge.spine.queue import StoredTxn

log = logging.getLogger("santeguard.dispatch")

READ_BATCH = 50  # stored transactions per read


class ReadBack:
    """The read loop (``run``): reads while there is room in memory and something to read."""

    def __init__(
        self, state: DispatchState, backlog: Backlog, store: QueueStore, metrics: Metrics
    ) -> None:
        self._state = state
        self._backlog = backlog
        self._store = store
        self._metrics = metrics

    async def run(self) -> None:
        st = self._state
        while True:
            await st.wake.wait()
            st.wake.clear()
            while self._want_read():
                try:
                    progressed = await self._read_once()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("Dispatcher could not read stored transactions; retrying in 1 s")
                    await asyncio.sleep(1)
                    continue
                if not progressed:
                    break
            st.gauge_memory()
            st.update_idle()

    def _want_read(self) -> bool:
        st = self._state
        if st.in_memory > st.low_water:
            return False
        return st.db_mode or any(st.ready(r) for r in st.spilled.values())

    async def _read_once(self) -> bool:
        st = self._state
        starts = [r.db_after for r in st.spilled.values() if st.ready(r)]
        if st.db_mode:
            starts.append(st.frontier)
            # Up to the tail (kept in memory) if there is one, else to the end.
            until = st.tail[0][0] - 1 if st.tail else None
        else:
            until = st.frontier  # catch-up only
        if not starts:
            return False
        start = min(starts)
        if until is not None and start >= until:
            return self._take_batch([], start, until)
        wakes = st.wakes
        st.reading = True
        try:
            batch = await st.db(self._store.pending(start, READ_BATCH, until))
        finally:
            st.reading = False
        self._metrics.dispatch_reads.inc()
        progressed = self._take_batch(batch, start, until)
        if st.wakes != wakes:  # woken during the read: read again, it may have missed some
            st.db_mode = True
            progressed = True
        return progressed

    def _take_batch(self, batch: list[StoredTxn], start: int, until: int | None) -> bool:
        """Take in one read (synchronous): catch-up for spilled rooms up to the frontier,
        then, in database mode, the transactions after it while they fit, then the tail."""
        st = self._state
        db_read = st.db_mode
        eligible = {
            r.room_id: r for r in st.spilled.values() if st.ready(r) and r.db_after >= start
        }
        blocked: set[str] = set()
        progressed = False
        stopped = False
        seen: set[int] = set()
        for txn in batch:
            if txn.seq > st.frontier:
                if not db_read:
                    break  # cannot happen: catch-up reads stop at the frontier
                progressed |= self._settle(eligible, blocked, st.frontier)
                eligible = {}
                if not st.fits(len(txn.events)):
                    stopped = True
                    break
                self._backlog.dispatch(txn.seq, txn.events)
                st.frontier = txn.seq
                st.remember(txn.seq)
                progressed = True
            else:
                progressed |= self._catch_up(txn, eligible, blocked)
            seen.add(txn.seq)
        complete = not stopped and len(batch) < READ_BATCH
        if complete and db_read and until is not None and until > st.frontier:
            st.frontier = until  # every stored transaction up to the tail is in
            progressed = True
        if complete:
            covered = st.frontier if db_read else until or 0
        elif batch and not stopped:
            covered = min(batch[-1].seq, st.frontier)
        else:
            covered = st.frontier
        progressed |= self._settle(eligible, blocked, covered)
        if db_read:
            progressed |= self._backlog.take_tail(seen, complete)
        st.gauge_memory()
        return progressed

    def _catch_up(self, txn: StoredTxn, eligible: dict[str, Room], blocked: set[str]) -> bool:
        """Give spilled rooms their events of ``txn`` (at or before the frontier)."""
        if not eligible:
            return False
        st = self._state
        by_room: dict[str, list[dict[str, Any]]] = {}
        for ev in txn.events:
            by_room.setdefault(str(ev.get("room_id")), []).append(ev)
        taken: list[tuple[Room, list[dict[str, Any]]]] = []
        adding = 0
        for room_id, evs in by_room.items():
            room = eligible.get(room_id)
            if room is None or room_id in blocked or room.db_after >= txn.seq:
                continue
            n = len(evs)
            fits = st.fits(n) if not adding else st.held + adding + n <= st.cap
            if not fits or (room.queue and len(room.queue) + n > st.room_limit):
                blocked.add(room_id)  # order: none of its later events in this read either
                room.db_after = max(room.db_after, txn.seq - 1)
                continue
            taken.append((room, evs))
            adding += n
        if not taken:
            return False
        for room, _ in taken:
            room.db_after = txn.seq
        self._backlog.enqueue(txn.seq, taken, frozenset(by_room) - {r.room_id for r, _ in taken})
        return True

    def _settle(self, eligible: dict[str, Room], blocked: set[str], covered: int) -> bool:
        """Rooms that saw every stored transaction up to ``covered`` advance to it; those
        that reach the frontier take their next events from ``submit`` again."""
        st = self._state
        changed = False
        for room in eligible.values():
            if room.room_id in blocked or not room.spilled:
                continue
            if covered > room.db_after:
                room.db_after = covered
                changed = True
            if room.db_after >= st.frontier:
                st.unspill(room)
                changed = True
        return changed
