"""``StuckWatch``: failure episodes, stuck rooms, and the dispatcher's gauges.

A room whose head event has been failing for ``stuck_after_seconds`` is *stuck*: counted
in ``santeguard_dispatch_stuck_rooms`` (no room ID in any label), listed by
``stuck_rooms()`` for ``/ready``, and reported once per episode to ``on_stuck`` (the
admin-room alert). The episode ends when the event is handled or dead-lettered. The watch
loop also keeps the backoff, spilled-room and queue-depth gauges current.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from bridge.ops.metrics import Metrics
from bridge.spine.dispatch.dead_letter import safe
from bridge.spine.dispatch.model import OnStuck, QueueStore, Room, StuckRoom
from bridge.spine.dispatch.state import DispatchState

log = logging.getLogger("santeguard.dispatch")

DEPTH_EVERY = 5.0  # seconds between depth queries while part of the queue is stored only


class StuckWatch:
    """Tracks failing rooms (``DispatchState.failing``) and reports the stuck ones."""

    def __init__(
        self,
        state: DispatchState,
        store: QueueStore,
        metrics: Metrics,
        *,
        stuck_after_seconds: float,
        on_stuck: OnStuck | None,
    ) -> None:
        self._state = state
        self._store = store
        self._metrics = metrics
        self._stuck_after = stuck_after_seconds
        self._watch_every = min(1.0, max(0.01, stuck_after_seconds / 4))
        self._on_stuck = on_stuck
        self.alerts: set[asyncio.Task[None]] = set()  # on_stuck calls under way
        self._last_depth = 0.0

    def reset(self) -> None:
        self._last_depth = 0.0

    def stuck_rooms(self) -> list[StuckRoom]:
        """Rooms whose next event has failed for longer than ``stuck_after_seconds``."""
        now = time.monotonic()
        out = []
        for room in self._state.failing.values():
            since = room.failing_since
            if since is None or now - since < self._stuck_after or not room.queue:
                continue
            head = room.queue[0].event
            out.append(
                StuckRoom(
                    room_id=safe(room.room_id),
                    event_id=safe(head.get("event_id")),
                    event_type=safe(head.get("type")),
                    error_kind=room.error_kind,
                    since=room.failing_since_wall,
                    retries=room.retries,
                )
            )
        out.sort(key=lambda s: s.since)
        return out

    # -- failure episodes -------------------------------------------------------------

    def failed(self, room: Room, kind: str, now: float) -> None:
        """The head event failed (again): start its episode or count one more try."""
        failing = self._state.failing
        if room.failing_since is None:
            room.failing_since = now
            room.failing_since_wall = time.time()
            failing[room.room_id] = room
            self._metrics.dispatch_backoff_rooms.set(len(failing))
        room.error_kind = kind
        room.retries += 1

    def served(self, room: Room) -> bool:
        """The head event is handled (or dead-lettered): end its episode, if it had one."""
        if room.failing_since is None:
            return False
        if room.reported:
            log.info(
                "Room %s is served again after %.0f s",
                safe(room.room_id),
                time.monotonic() - room.failing_since,
            )
        room.failing_since = None
        room.reported = False
        room.error_kind = ""
        failing = self._state.failing
        failing.pop(room.room_id, None)
        self._metrics.dispatch_backoff_rooms.set(len(failing))
        self._metrics.dispatch_stuck_rooms.set(sum(r.reported for r in failing.values()))
        return True

    def check(self, room: Room, now: float) -> None:
        """Report ``room`` once it has been failing for ``stuck_after_seconds``."""
        since = room.failing_since
        if room.reported or since is None or now - since < self._stuck_after:
            return
        room.reported = True
        self._metrics.dispatch_stuck_episodes.inc()
        self._metrics.dispatch_stuck_rooms.set(
            sum(r.reported for r in self._state.failing.values())
        )
        head = room.queue[0].event if room.queue else {}
        room_id, event_type = safe(room.room_id), safe(head.get("type"))
        log.warning(
            "Room %s is stuck: its next event %s (%s) has been failing for %.0f s (%s, %d tries)",
            room_id,
            safe(head.get("event_id")),
            event_type,
            now - since,
            room.error_kind,
            room.retries,
        )
        if self._on_stuck is not None:
            task = asyncio.create_task(
                self._notify(room_id, event_type, room.error_kind, room.failing_since_wall),
                name="santeguard-stuck-alert",
            )
            self.alerts.add(task)
            task.add_done_callback(self.alerts.discard)

    async def _notify(self, room_id: str, event_type: str, kind: str, since: float) -> None:
        assert self._on_stuck is not None
        try:
            await self._on_stuck(room_id, event_type, kind, since)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Could not report stuck room %s", room_id)

    async def run(self) -> None:
        """Check failing rooms and refresh the gauges every ``stuck_after_seconds / 4``
        (between 10 ms and 1 s); the stored depth at most every ``DEPTH_EVERY``."""
        st = self._state
        m = self._metrics
        while True:
            await asyncio.sleep(self._watch_every)
            now = time.monotonic()
            for room in list(st.failing.values()):
                self.check(room, now)
            m.dispatch_backoff_rooms.set(len(st.failing))
            m.dispatch_stuck_rooms.set(sum(r.reported for r in st.failing.values()))
            m.dispatch_spilled_rooms.set(len(st.spilled))
            if (st.db_mode or st.spilled) and now - self._last_depth >= DEPTH_EVERY:
                self._last_depth = now
                with contextlib.suppress(Exception):
                    m.queue_depth.set(await st.db(self._store.depth()))
