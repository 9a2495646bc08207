"""Per-room ordered dispatch of stored events, with bounded concurrency and bounded memory.

Events are handled only once their transaction is committed: the intake hands the
committed transaction over in memory (``submit``), and at start the dispatcher reads
back whatever was stored but not done, so what was acked is handled after a crash too.

**Order and slots.** Within a room events are handled strictly in order, by one worker
per room; at most ``max_concurrent_rooms`` workers hold a slot at a time. A worker holds
its slot only while it calls handlers: a failing event is retried with backoff *outside*
the slot, so rooms that cannot be served do not keep the others waiting. A
``TransientError`` (the homeserver is down, say) is retried with capped backoff without
using up attempts; any other error is retried ``max_attempts`` times, then the event goes
to the dead-letter table (kept, counted and logged). If even that write fails for a reason
other than an unreachable database, the event is given up after a few tries with an
ERROR log naming it (ID, type, room), so nothing can make a room loop forever.

**Bounded memory.** At most ``max_in_memory_events`` events are held in memory; the
database holds the rest (every transaction is stored before it is acked). When ``submit``
would go past the cap, the dispatcher only notes that the database has more and reads it
back, in sequence order, as room queues drain (``_frontier`` is the last transaction
taken in; nothing after it is in memory). A room also holds at most ``room_limit``
events, and a room whose next event is failing holds only that event's transaction: its
later events are *spilled*, left in the database while everything else moves on, and
read back in order (``_Room.db_after``) once its head event is handled. One read serves
every room catching up, and the rooms' own marks keep each event taken in exactly once.

**Done marks.** A transaction is marked done once all its events are handled; marks are
written in batches (one commit per ``done_flush_seconds``). When some of a transaction's
events were spilled, the last room to get past it marks it (``_passed``). After a crash,
the events of transactions not yet marked done are handled again: handlers with side
effects are idempotent (they key their effects on the event ID).

**Stuck rooms.** A room whose head event has been failing for ``stuck_after_seconds`` is
stuck: counted in ``santeguard_dispatch_stuck_rooms``, listed by ``stuck_rooms()`` (for
``/ready``) and reported once per episode to ``on_stuck``.

Transactions are assumed to commit in sequence order, which holds because the homeserver
sends an application service one transaction at a time; one that commits after a later one
was taken in (``seq <= _frontier`` at ``submit``) is still handled, in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from bridge.core.errors import TransientError
from bridge.ops.metrics import Metrics
from bridge.spine.queue import StoredTxn, storable_text

log = logging.getLogger("santeguard.dispatch")
T = TypeVar("T")

# Returns True when the event called for work (its latency is then recorded).
EventHandler = Callable[[dict[str, Any]], Awaitable[bool]]
# on_stuck(room_id, event_type, error_kind, since): once per stuck episode of a room.
OnStuck = Callable[[str, str, str, float], Awaitable[None]]

SLICE = 64  # events handled per slot hold, before yielding the loop
READ_BATCH = 50  # stored transactions per read
DEAD_LETTER_TRIES = 3  # failed dead-letter writes (database reachable) before giving up
RECENT = 1024  # sequence numbers recently read in, so a late ``submit`` of one is ignored
DEPTH_EVERY = 5.0  # seconds between depth queries while part of the queue is stored only

# Why a room's head event is failing (StuckRoom.error_kind, on_stuck's error_kind).
UNAVAILABLE: Final = "unavailable"  # TransientError: a dependency is down
ERROR: Final = "error"  # the handler raised; attempts are being used up
DEAD_LETTER: Final = "dead_letter"  # attempts used up, the dead letter could not be written


class QueueStore(Protocol):
    async def pending(
        self, after_seq: int, limit: int = 50, until_seq: int | None = None
    ) -> list[StoredTxn]: ...
    async def mark_done(self, seqs: list[int]) -> None: ...
    async def dead_letter(
        self, txn_seq: int, event: dict[str, Any], attempts: int, error: str
    ) -> None: ...
    async def depth(self) -> int: ...


@dataclass(frozen=True, slots=True)
class StuckRoom:
    """A room whose next event has been failing for longer than ``stuck_after_seconds``.

    Text fields are safe to log and serialise (``storable_text``); none holds content.
    """

    room_id: str
    event_id: str
    event_type: str
    error_kind: str  # UNAVAILABLE, ERROR or DEAD_LETTER
    since: float  # Unix time of the first failure of this event
    retries: int  # failed tries of this event so far


@dataclass(slots=True, eq=False)
class _TxnProgress:
    remaining: int  # events counted here and not yet handled
    others: frozenset[str] = frozenset()  # the txn's rooms whose events are counted elsewhere


@dataclass(slots=True)
class _Item:
    txn_seq: int
    event: dict[str, Any]
    progress: _TxnProgress = field(repr=False)


@dataclass(slots=True, eq=False)
class _Room:
    room_id: str
    queue: deque[_Item] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None
    # Spilled: this room's events in stored transactions after db_after (up to the
    # frontier) are in the database only; those up to db_after are in memory or handled.
    spilled: bool = False
    db_after: int = 0
    # The failure episode of the head event.
    attempts: int = 0
    outage: int = 0
    dl_failures: int = 0
    dead_error: str | None = None
    failing_since: float | None = None  # monotonic
    failing_since_wall: float = 0.0
    error_kind: str = ""
    retries: int = 0
    delay: float = 0.0
    reported: bool = False


_DONE: Final = "done"
_DEAD: Final = "dead"
_RETRY: Final = "retry"


def _safe(value: object, limit: int = 255) -> str:
    """Identifiers and error text for logs: never fails to encode, bounded in length."""
    return storable_text(value, limit)


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
        self._handler = handler
        self._metrics = metrics
        self._sem = asyncio.Semaphore(max_concurrent_rooms)
        self._max_attempts = max_attempts
        self._retry_base = retry_base_seconds
        self._max_backoff = max_backoff_seconds
        self._flush_every = done_flush_seconds
        self._cap = max(1, max_in_memory_events)
        self._low_water = self._cap // 2
        self._room_limit = room_limit or max(SLICE, self._cap // 8)
        self._stuck_after = stuck_after_seconds
        self._watch_every = min(1.0, max(0.01, stuck_after_seconds / 4))
        self._on_stuck = on_stuck
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._notify: set[asyncio.Task[None]] = set()
        self._db_calls: set[asyncio.Future[Any]] = set()
        self._count_done = metrics.handled.labels(outcome="done")
        self._count_retry = metrics.handled.labels(outcome="retry")
        self._count_failed = metrics.handled.labels(outcome="failed")
        self._reset()

    def _reset(self) -> None:
        self._rooms: dict[str, _Room] = {}
        self._spilled: dict[str, _Room] = {}
        self._failing: dict[str, _Room] = {}
        # Every transaction committed up to the frontier has been taken in (its events
        # queued, or left to their spilled rooms); none after it is in a room queue.
        self._frontier = 0
        self._db_mode = True  # the database may hold transactions after the frontier
        self._reading = False
        # While the database holds a backlog, transactions submitted meanwhile are kept
        # here (contiguous, at most a quarter of the cap) and taken in once the reads
        # reach them, so a backlog does not turn every later event into a read.
        self._tail: list[tuple[int, list[dict[str, Any]]]] = []
        self._tail_events = 0
        self._tail_open = True
        self._recent: deque[int] = deque(maxlen=RECENT)
        self._recent_set: set[int] = set()
        self._in_memory = 0
        self._peak = 0
        self._done: list[int] = []
        self._last_depth = 0.0

    # -- intake side ----------------------------------------------------------------

    def wake(self) -> None:
        """Ask for a read of stored-but-pending transactions (start, recovery)."""
        self._idle.clear()
        self._db_mode = True
        self._wake.set()

    def submit(self, seq: int, events: list[dict[str, Any]]) -> None:
        """Hand over a just-committed transaction, saving a read of its body.

        Never holds more than ``max_in_memory_events``: past the cap, the transaction is
        left to the database and read back later, in order.
        """
        self._idle.clear()
        if seq in self._recent_set:
            pass  # already read from the database
        elif seq <= self._frontier:
            self._dispatch(seq, events, late=True)
        elif not self._db_mode and self._fits(len(events)):
            self._dispatch(seq, events)
            self._frontier = seq
        else:
            self._db_mode = True
            n = len(events)
            if (
                (self._tail_open or not self._tail)
                and self._tail_events + n <= self._cap // 4
                and self._fits(n)
            ):
                self._tail.append((seq, events))
                self._tail_events += n
                self._tail_open = True
                self._peak = max(self._peak, self._in_memory + self._tail_events)
            elif self._tail:
                self._tail_open = False  # left to the database: the tail stays contiguous
            self._wake.set()
        self._gauge_memory()
        self._update_idle()

    @property
    def in_memory(self) -> int:
        """Events held in memory now (queued in rooms or kept in the tail)."""
        return self._in_memory + self._tail_events

    @property
    def in_memory_peak(self) -> int:
        """The most events held in memory at once since start."""
        return self._peak

    @property
    def max_in_memory_events(self) -> int:
        return self._cap

    def stuck_rooms(self) -> list[StuckRoom]:
        """Rooms whose next event has failed for longer than ``stuck_after_seconds``."""
        now = time.monotonic()
        out = []
        for room in self._failing.values():
            since = room.failing_since
            if since is None or now - since < self._stuck_after or not room.queue:
                continue
            head = room.queue[0].event
            out.append(
                StuckRoom(
                    room_id=_safe(room.room_id),
                    event_id=_safe(head.get("event_id")),
                    event_type=_safe(head.get("type")),
                    error_kind=room.error_kind,
                    since=room.failing_since_wall,
                    retries=room.retries,
                )
            )
        out.sort(key=lambda s: s.since)
        return out

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._reset()
        self._task = asyncio.create_task(self._run(), name="santeguard-dispatch")
        self._flush_task = asyncio.create_task(self._flush_loop(), name="santeguard-done")
        self._watch_task = asyncio.create_task(self._watch_loop(), name="santeguard-stuck")
        self.wake()

    async def stop(self) -> None:
        workers = [r.worker for r in self._rooms.values() if r.worker is not None]
        tasks = [
            t
            for t in (self._task, self._flush_task, self._watch_task, *workers, *self._notify)
            if t is not None
        ]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for call in list(self._db_calls):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await call
        await self._flush()
        self._task = self._flush_task = self._watch_task = None
        self._notify.clear()
        self._reset()
        self._db_mode = False
        self._gauge_memory()

    async def wait_idle(self, timeout: float = 10) -> None:
        """Wait until everything stored so far is handled and marked done."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    def _update_idle(self) -> None:
        if (
            not self._rooms
            and not self._db_mode
            and not self._reading
            and not self._wake.is_set()
            and not self._done
        ):
            self._idle.set()

    # -- taking transactions in -----------------------------------------------------

    def _fits(self, n: int) -> bool:
        """Whether ``n`` more events stay within the cap. When only failing rooms' head
        events are held, the next transaction is taken anyway, or nothing could move."""
        held = self._in_memory + self._tail_events
        if held == 0 or held + n <= self._cap:
            return True
        return self._in_memory == sum(len(r.queue) for r in self._failing.values())

    def _dispatch(self, seq: int, events: list[dict[str, Any]], *, late: bool = False) -> None:
        """Take in a transaction not seen before: its events go to their rooms' queues,
        except those of rooms that wait in the database (spilled), which stay there."""
        if not events:
            self._done.append(seq)
            return
        by_room: dict[str, list[dict[str, Any]]] = {}
        for ev in events:
            by_room.setdefault(str(ev.get("room_id")), []).append(ev)
        taken: list[tuple[_Room, list[dict[str, Any]]]] = []
        left: set[str] = set()
        for room_id, evs in by_room.items():
            room = self._rooms.get(room_id)
            if room is not None and room.spilled and room.db_after < seq:
                left.add(room_id)
                continue
            if (
                not late
                and room is not None
                and (
                    room.failing_since is not None
                    or (room.queue and len(room.queue) + len(evs) > self._room_limit)
                )
            ):
                self._spill(room, seq - 1)
                left.add(room_id)
                continue
            if room is None:
                room = self._rooms[room_id] = _Room(room_id)
            taken.append((room, evs))
        if taken:
            self._enqueue(seq, taken, frozenset(left))
        # else: every event waits for its room to read it back; the last one marks it.

    def _enqueue(
        self, seq: int, taken: list[tuple[_Room, list[dict[str, Any]]]], others: frozenset[str]
    ) -> None:
        progress = _TxnProgress(sum(len(evs) for _, evs in taken), others)
        for room, evs in taken:
            for ev in evs:
                room.queue.append(_Item(seq, ev, progress))
            self._in_memory += len(evs)
            if room.worker is None:
                room.worker = asyncio.create_task(
                    self._room_worker(room), name="santeguard-room-worker"
                )
        self._peak = max(self._peak, self._in_memory + self._tail_events)

    def _spill(self, room: _Room, db_after: int) -> None:
        if room.spilled:
            room.db_after = min(room.db_after, db_after)
            return
        room.spilled = True
        room.db_after = db_after
        self._spilled[room.room_id] = room

    def _unspill(self, room: _Room) -> None:
        room.spilled = False
        self._spilled.pop(room.room_id, None)
        if not room.queue and room.worker is None:
            self._drop_room(room)

    def _drop_room(self, room: _Room) -> None:
        if self._rooms.get(room.room_id) is room:
            del self._rooms[room.room_id]

    def _ready(self, room: _Room) -> bool:
        """A spilled room that can take its stored events back now."""
        return room.failing_since is None and len(room.queue) <= self._room_limit // 2

    def _remember(self, seq: int) -> None:
        if len(self._recent) == RECENT:
            self._recent_set.discard(self._recent[0])
        self._recent.append(seq)
        self._recent_set.add(seq)

    # -- reading back from the database ---------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
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
            self._gauge_memory()
            self._update_idle()

    def _want_read(self) -> bool:
        if self._in_memory > self._low_water:
            return False
        return self._db_mode or any(self._ready(r) for r in self._spilled.values())

    async def _read_once(self) -> bool:
        starts = [r.db_after for r in self._spilled.values() if self._ready(r)]
        if self._db_mode:
            starts.append(self._frontier)
            # Up to the tail (kept in memory) if there is one, else to the end.
            until = self._tail[0][0] - 1 if self._tail else None
        else:
            until = self._frontier  # catch-up only
        if not starts:
            return False
        start = min(starts)
        if until is not None and start >= until:
            return self._take_batch([], start, until)
        self._reading = True
        try:
            batch = await self._db(self._store.pending(start, READ_BATCH, until))
        finally:
            self._reading = False
        self._metrics.dispatch_reads.inc()
        return self._take_batch(batch, start, until)

    def _take_batch(self, batch: list[StoredTxn], start: int, until: int | None) -> bool:
        """Take in one read (synchronous): catch-up for spilled rooms up to the frontier,
        then, in database mode, the transactions after it while they fit, then the tail."""
        db_read = self._db_mode
        eligible = {
            r.room_id: r for r in self._spilled.values() if self._ready(r) and r.db_after >= start
        }
        blocked: set[str] = set()
        progressed = False
        stopped = False
        seen: set[int] = set()
        for txn in batch:
            if txn.seq > self._frontier:
                if not db_read:
                    break  # cannot happen: catch-up reads stop at the frontier
                progressed |= self._settle(eligible, blocked, self._frontier)
                eligible = {}
                if not self._fits(len(txn.events)):
                    stopped = True
                    break
                self._dispatch(txn.seq, txn.events)
                self._frontier = txn.seq
                self._remember(txn.seq)
                progressed = True
            else:
                progressed |= self._catch_up(txn, eligible, blocked)
            seen.add(txn.seq)
        complete = not stopped and len(batch) < READ_BATCH
        if complete and db_read and until is not None and until > self._frontier:
            self._frontier = until  # every stored transaction up to the tail is in
            progressed = True
        if complete:
            covered = self._frontier if db_read else until or 0
        elif batch and not stopped:
            covered = min(batch[-1].seq, self._frontier)
        else:
            covered = self._frontier
        progressed |= self._settle(eligible, blocked, covered)
        if db_read:
            progressed |= self._take_tail(seen, complete)
        self._gauge_memory()
        return progressed

    def _take_tail(self, seen: set[int], complete: bool) -> bool:
        """After a database-mode read: take in the tail once the reads have reached it,
        and leave database mode when nothing is left in the database only."""
        progressed = False
        tail = sorted(self._tail, key=lambda t: t[0])
        self._tail = []
        self._tail_events = 0
        keep: list[tuple[int, list[dict[str, Any]]]] = []
        for seq, events in tail:
            if keep:
                keep.append((seq, events))
            elif seq in seen or seq in self._recent_set:
                progressed = True  # the read had it
            elif seq <= self._frontier:  # committed after a later one; not in the read
                self._dispatch(seq, events, late=True)
                progressed = True
            elif complete and self._fits(len(events)):
                self._dispatch(seq, events)
                self._frontier = seq
                progressed = True
            else:
                keep.append((seq, events))
        self._tail = keep
        self._tail_events = sum(len(events) for _, events in keep)
        if complete and not keep:
            if self._tail_open:
                self._db_mode = False  # nothing was left to the database: back to submit
            self._tail_open = True
            progressed = True
        return progressed

    def _catch_up(self, txn: StoredTxn, eligible: dict[str, _Room], blocked: set[str]) -> bool:
        """Give spilled rooms their events of ``txn`` (at or before the frontier)."""
        if not eligible:
            return False
        by_room: dict[str, list[dict[str, Any]]] = {}
        for ev in txn.events:
            by_room.setdefault(str(ev.get("room_id")), []).append(ev)
        taken: list[tuple[_Room, list[dict[str, Any]]]] = []
        adding = 0
        for room_id, evs in by_room.items():
            room = eligible.get(room_id)
            if room is None or room_id in blocked or room.db_after >= txn.seq:
                continue
            n = len(evs)
            fits = (
                self._fits(n)
                if not adding
                else self._in_memory + self._tail_events + adding + n <= self._cap
            )
            if not fits or (room.queue and len(room.queue) + n > self._room_limit):
                blocked.add(room_id)  # order: none of its later events in this read either
                room.db_after = max(room.db_after, txn.seq - 1)
                continue
            taken.append((room, evs))
            adding += n
        if not taken:
            return False
        for room, _ in taken:
            room.db_after = txn.seq
        self._enqueue(txn.seq, taken, frozenset(by_room) - {r.room_id for r, _ in taken})
        return True

    def _settle(self, eligible: dict[str, _Room], blocked: set[str], covered: int) -> bool:
        """Rooms that saw every stored transaction up to ``covered`` advance to it; those
        that reach the frontier take their next events from ``submit`` again."""
        changed = False
        for room in eligible.values():
            if room.room_id in blocked or not room.spilled:
                continue
            if covered > room.db_after:
                room.db_after = covered
                changed = True
            if room.db_after >= self._frontier:
                self._unspill(room)
                changed = True
        return changed

    # -- handling, per room -----------------------------------------------------------

    async def _room_worker(self, room: _Room) -> None:
        queue = room.queue
        try:
            while queue:
                delay = 0.0
                # A slice of up to SLICE events per slot hold, then yield, so the intake
                # (acks) and other rooms get the loop between slices. A failing event
                # gives its slot back while it waits to be retried.
                async with self._sem:
                    n = handled = 0
                    while queue and n < SLICE:
                        item = queue[0]
                        outcome = await self._attempt(room, item)
                        if outcome == _RETRY:
                            delay = room.delay
                            break
                        queue.popleft()
                        n += 1
                        self._in_memory -= 1
                        if outcome == _DONE:
                            handled += 1
                        self._end_failure(room)
                        self._item_done(item)
                    self._count_done.inc(handled)
                self._gauge_memory()
                self._maybe_wake()
                await asyncio.sleep(delay)
        finally:
            room.worker = None
            if not room.queue:
                if room.spilled:
                    self._wake.set()
                else:
                    self._drop_room(room)
            self._update_idle()

    async def _db(self, call: Awaitable[T]) -> T:
        """Run a database call to its end even if this task is cancelled: on SQLite, a
        read cancelled half-way leaves its cursor open, and the shared connection then
        keeps reading an old snapshot (done marks written since would not be seen)."""
        fut = asyncio.ensure_future(call)
        self._db_calls.add(fut)
        fut.add_done_callback(self._db_calls.discard)
        return await asyncio.shield(fut)

    def _maybe_wake(self) -> None:
        if self._in_memory <= self._low_water and (self._db_mode or self._spilled):
            self._wake.set()

    async def _attempt(self, room: _Room, item: _Item) -> str:
        """Try the head event once: _DONE, _DEAD (dead-lettered or given up) or _RETRY."""
        if room.dead_error is not None:
            return await self._write_dead_letter(room, item)
        ev = item.event
        start = time.perf_counter()
        try:
            acted = await self._handler(ev)
        except asyncio.CancelledError:
            raise
        except TransientError as e:
            room.outage += 1
            delay = self._backoff(room.outage)
            log.warning(
                "Dependency unavailable while handling %s (%s) in %s (%s); retrying in %.1f s",
                _safe(ev.get("event_id")),
                _safe(ev.get("type")),
                _safe(room.room_id),
                _safe(e, 300),
                delay,
            )
            self._failed(room, UNAVAILABLE, delay)
            return _RETRY
        except Exception as e:
            room.attempts += 1
            first, final = room.attempts == 1, room.attempts >= self._max_attempts
            log.warning(
                "Handling %s (%s) in %s failed (attempt %d/%d): %s",
                _safe(ev.get("event_id")),
                _safe(ev.get("type")),
                _safe(room.room_id),
                room.attempts,
                self._max_attempts,
                _safe(f"{type(e).__name__}: {e}", 300),
                exc_info=first or final,
            )
            if final:
                room.dead_error = _safe(f"{type(e).__name__}: {e}", 500)
                return await self._write_dead_letter(room, item)
            self._failed(room, ERROR, self._backoff(room.attempts))
            return _RETRY
        if acted or room.failing_since is not None:
            self._metrics.handler_latency.observe(time.perf_counter() - start)
        return _DONE

    async def _write_dead_letter(self, room: _Room, item: _Item) -> str:
        ev = item.event
        try:
            await self._db(
                self._store.dead_letter(
                    item.txn_seq, ev, room.attempts, room.dead_error or "unknown"
                )
            )
        except asyncio.CancelledError:
            raise
        except TransientError:
            room.outage += 1
            delay = self._backoff(room.outage)
            log.warning("Database unavailable for a dead letter; retrying in %.1f s", delay)
            self._failed(room, DEAD_LETTER, delay)
            return _RETRY
        except Exception as e:
            room.dl_failures += 1
            if room.dl_failures >= DEAD_LETTER_TRIES:
                log.error(
                    "Giving up on event %s (%s) in %s after %d attempts: its dead letter "
                    "could not be written either (%s)",
                    _safe(ev.get("event_id")),
                    _safe(ev.get("type")),
                    _safe(room.room_id),
                    room.attempts,
                    type(e).__name__,
                )
                self._metrics.events_abandoned.inc()
                self._count_failed.inc()
                return _DEAD
            log.warning("Could not record dead letter (%s); retrying", type(e).__name__)
            self._failed(room, DEAD_LETTER, self._backoff(room.dl_failures))
            return _RETRY
        log.error(
            "Event %s (%s) in %s failed %d times; kept in the dead letters",
            _safe(ev.get("event_id")),
            _safe(ev.get("type")),
            _safe(room.room_id),
            room.attempts,
        )
        self._count_failed.inc()
        return _DEAD

    def _backoff(self, n: int) -> float:
        return min(self._max_backoff, self._retry_base * float(2 ** min(n - 1, 16)))

    def _failed(self, room: _Room, kind: str, delay: float) -> None:
        """The head event failed and will be retried after ``delay``, outside the slot."""
        now = time.monotonic()
        if room.failing_since is None:
            room.failing_since = now
            room.failing_since_wall = time.time()
            self._failing[room.room_id] = room
            self._metrics.dispatch_backoff_rooms.set(len(self._failing))
        room.error_kind = kind
        room.retries += 1
        room.delay = delay
        self._count_retry.inc()
        self._evict(room)
        self._check_stuck(room, now)

    def _evict(self, room: _Room) -> None:
        """Leave a failing room's later transactions to the database (read back later)."""
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
        self._in_memory -= len(evicted)
        self._spill(room, min(it.txn_seq for it in evicted) - 1)
        counts: dict[int, tuple[_Item, int]] = {}
        for it in evicted:
            first, k = counts.get(id(it.progress), (it, 0))
            counts[id(it.progress)] = (first, k + 1)
        for it, k in counts.values():
            p = it.progress
            p.remaining -= k
            p.others = p.others | {room.room_id}
            if p.remaining == 0:
                self._txn_finished(it.txn_seq, p.others)

    def _end_failure(self, room: _Room) -> None:
        """The head event is handled (or dead-lettered): its failure episode ends."""
        room.attempts = room.outage = room.dl_failures = room.retries = 0
        room.dead_error = None
        if room.failing_since is None:
            return
        if room.reported:
            log.info(
                "Room %s is served again after %.0f s",
                _safe(room.room_id),
                time.monotonic() - room.failing_since,
            )
        room.failing_since = None
        room.reported = False
        room.error_kind = ""
        self._failing.pop(room.room_id, None)
        self._metrics.dispatch_backoff_rooms.set(len(self._failing))
        self._metrics.dispatch_stuck_rooms.set(sum(r.reported for r in self._failing.values()))
        if room.spilled:
            self._wake.set()

    def _item_done(self, item: _Item) -> None:
        p = item.progress
        p.remaining -= 1
        if p.remaining == 0:
            self._txn_finished(item.txn_seq, p.others)

    def _txn_finished(self, seq: int, others: frozenset[str]) -> None:
        """This part of the txn is handled: mark it done if every other room is past it."""
        if all(self._passed(room_id, seq) for room_id in others):
            self._done.append(seq)

    def _passed(self, room_id: str, seq: int) -> bool:
        """Whether ``room_id`` has handled all of its events in transactions up to ``seq``."""
        room = self._rooms.get(room_id)
        if room is None:
            return True
        if room.queue:
            return room.queue[0].txn_seq > seq
        if room.spilled:
            return room.db_after >= seq
        return True

    # -- stuck rooms ------------------------------------------------------------------

    def _check_stuck(self, room: _Room, now: float) -> None:
        since = room.failing_since
        if room.reported or since is None or now - since < self._stuck_after:
            return
        room.reported = True
        self._metrics.dispatch_stuck_episodes.inc()
        self._metrics.dispatch_stuck_rooms.set(sum(r.reported for r in self._failing.values()))
        head = room.queue[0].event if room.queue else {}
        room_id, event_type = _safe(room.room_id), _safe(head.get("type"))
        log.warning(
            "Room %s is stuck: its next event %s (%s) has been failing for %.0f s (%s, %d tries)",
            room_id,
            _safe(head.get("event_id")),
            event_type,
            now - since,
            room.error_kind,
            room.retries,
        )
        if self._on_stuck is not None:
            task = asyncio.create_task(
                self._notify_stuck(room_id, event_type, room.error_kind, room.failing_since_wall),
                name="santeguard-stuck-alert",
            )
            self._notify.add(task)
            task.add_done_callback(self._notify.discard)

    async def _notify_stuck(self, room_id: str, event_type: str, kind: str, since: float) -> None:
        assert self._on_stuck is not None
        try:
            await self._on_stuck(room_id, event_type, kind, since)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Could not report stuck room %s", room_id)

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self._watch_every)
            now = time.monotonic()
            for room in list(self._failing.values()):
                self._check_stuck(room, now)
            m = self._metrics
            m.dispatch_backoff_rooms.set(len(self._failing))
            m.dispatch_stuck_rooms.set(sum(r.reported for r in self._failing.values()))
            m.dispatch_spilled_rooms.set(len(self._spilled))
            if (self._db_mode or self._spilled) and now - self._last_depth >= DEPTH_EVERY:
                self._last_depth = now
                with contextlib.suppress(Exception):
                    m.queue_depth.set(await self._db(self._store.depth()))

    def _gauge_memory(self) -> None:
        self._metrics.dispatch_in_memory.set(self._in_memory + self._tail_events)
        if not self._db_mode and not self._spilled:
            self._metrics.queue_depth.set(self._in_memory)

    # -- done marks -------------------------------------------------------------------

    async def _flush(self) -> None:
        if not self._done:
            return
        batch, self._done = self._done, []
        try:
            await self._store.mark_done(batch)
        except asyncio.CancelledError:
            self._done = batch + self._done  # stop() flushes them again (idempotent)
            raise
        except Exception:
            log.exception("Could not mark %d transactions done; will retry", len(batch))
            self._done = batch + self._done
            return
        self._update_idle()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_every)
            await self._flush()
