"""Rooms that cannot be served do not stop the others, and the dispatcher's memory is bounded.

Each test runs the real ``EventQueueStore`` on SQLite and on PostgreSQL: transactions are
stored as the intake stores them (committed, then ``submit``), or inserted directly. No
test asserts a duration; waits only have generous timeouts so a bug fails instead of hangs.

The memory test has a long form, the size the issue asks for (8 rooms failing for ten
minutes while 100,000 events arrive for 100 rooms)::

    SANTEGUARD_LONG_TESTS=1 .venv/bin/pytest -s tests/spine/test_dispatch_isolation.py -k memory

It prints the figures it measured (traced memory, RSS, events in memory).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from mautrix.util.async_db import Database

from bridge.core.errors import TransientError
from bridge.ops.metrics import Metrics
from bridge.spine.dispatch import UNAVAILABLE, Dispatcher
from bridge.spine.queue import EventQueueStore, storable_text

LONG = os.environ.get("SANTEGUARD_LONG_TESTS") == "1"


def event(room: str, n: int, kind: str = "m.room.message", size: int = 200) -> dict[str, Any]:
    """Event ``n`` of ``room`` (its ID ends in ``-n``), with a ``size``-byte message."""
    tag = room.strip("!").split(":")[0]
    return {
        "type": kind,
        "event_id": f"${tag}-{n}",
        "room_id": room,
        "sender": "@a:santeguard.test",
        "origin_server_ts": 1_700_000_000_000 + n,
        "content": {"msgtype": "m.text", "body": f"message {n} " + "x" * size},
    }


class Handler:
    """Checks that each room's events come exactly once and in order (event ``n`` of a
    room must be its ``n``-th call), keeping counters only, so memory measurements see
    the dispatcher and not this record. Rooms in ``failing`` raise ``TransientError``
    (the bot's device is not ready, say); ``gate`` holds every call."""

    def __init__(self) -> None:
        self.handled: dict[str, int] = {}
        self.errors: list[str] = []
        self.count = 0
        self.failing: set[str] = set()
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, ev: dict[str, Any]) -> bool:
        await self.gate.wait()
        room = ev["room_id"]
        if room in self.failing:
            raise TransientError("bot device not ready (test)")
        n = int(ev["event_id"].rsplit("-", 1)[1])
        so_far = self.handled.get(room, 0)
        if n != so_far and len(self.errors) < 20:
            self.errors.append(f"{room}: event {n} came as number {so_far}")
        self.handled[room] = so_far + 1
        self.count += 1
        return True


class Traffic:
    """Events for many rooms in turn, numbered per room."""

    def __init__(self, rooms: list[str], size: int = 200) -> None:
        self.rooms = rooms
        self.size = size
        self.next: dict[str, int] = dict.fromkeys(rooms, 0)
        self._turn = 0
        self._txn = 0

    def batch(self, size: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(size):
            room = self.rooms[self._turn % len(self.rooms)]
            self._turn += 1
            out.append(event(room, self.next[room], size=self.size))
            self.next[room] += 1
        return out

    def txn_id(self) -> str:
        self._txn += 1
        return f"t{self._txn}"

    def served(self, handler: Handler, rooms: list[str]) -> bool:
        """Every event of ``rooms`` handled (once and in order if handler.errors is empty)."""
        return all(handler.handled.get(r, 0) == self.next[r] for r in rooms)


@pytest.fixture
async def store(db: Database) -> AsyncIterator[EventQueueStore]:
    queue = EventQueueStore(db, sqlite_synchronous="normal")
    await queue.open()
    try:
        yield queue
    finally:
        await queue.close()


async def deliver(
    store: EventQueueStore, disp: Dispatcher, txn_id: str, events: list[dict[str, Any]]
) -> None:
    """What the intake does: commit the transaction, then hand it over. (A SQLite commit
    runs inline, so without the network's pause this loop would never let others run.)"""
    await asyncio.sleep(0)
    body = json.dumps({"events": events}).encode()
    seq = await store.store_transaction(txn_id, body, len(events))
    assert seq is not None
    disp.submit(seq, events)


async def until(cond: Callable[[], bool], timeout: float = 60) -> None:
    """Wait for ``cond`` (polled: it reads plain counters, there is nothing to await)."""

    async def poll() -> None:
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def dispatcher(store: EventQueueStore, handler: Handler, **kw: Any) -> Dispatcher:
    """A dispatcher with quick retries and a small cap (overridden by ``kw``)."""
    args: dict[str, Any] = {
        "max_concurrent_rooms": 8,
        "max_attempts": 3,
        "retry_base_seconds": 0.01,
        "max_backoff_seconds": 0.05,
        "max_in_memory_events": 400,
        "stuck_after_seconds": 0.2,
    }
    args.update(kw)
    return Dispatcher(store, handler, args.pop("metrics", None) or Metrics(), **args)


async def pending_txns(db: Database) -> int:
    return int(await db.fetchval("SELECT COUNT(*) FROM txn WHERE status = 'pending'") or 0)


async def test_failing_rooms_release_their_slots_are_reported_then_recover(
    db: Database, store: EventQueueStore
) -> None:
    bad = [f"!bad{i}:x" for i in range(8)]
    good = [f"!ok{i}:x" for i in range(100)]
    traffic = Traffic(bad + good)
    handler = Handler()
    handler.failing = set(bad)
    alerts: list[tuple[str, str, str, float]] = []

    async def on_stuck(room_id: str, event_type: str, error_kind: str, since: float) -> None:
        alerts.append((room_id, event_type, error_kind, since))

    metrics = Metrics()
    # As many failing rooms as slots: if a room kept its slot while it waits, no other
    # room would ever be served.
    disp = dispatcher(store, handler, metrics=metrics, max_concurrent_rooms=8, on_stuck=on_stuck)
    await disp.start()
    try:
        for _ in range(300):  # 3,000 events, every transaction mixing rooms
            await deliver(store, disp, traffic.txn_id(), traffic.batch(10))
        await until(lambda: traffic.served(handler, good))
        assert handler.errors == []  # all, once, in order
        assert not any(r in handler.handled for r in bad)

        await until(lambda: len(disp.stuck_rooms()) == 8 and len(alerts) == 8)
        stuck = disp.stuck_rooms()
        assert sorted(s.room_id for s in stuck) == sorted(bad)
        for s in stuck:
            assert s.event_id == event(s.room_id, 0)["event_id"]  # the head event
            assert (s.event_type, s.error_kind) == ("m.room.message", UNAVAILABLE)
            assert s.retries >= 1
        assert sorted(a[0] for a in alerts) == sorted(bad)  # once per room and episode
        assert {a[1:3] for a in alerts} == {("m.room.message", UNAVAILABLE)}
        rendered = metrics.render().decode()
        assert "santeguard_dispatch_stuck_rooms 8.0" in rendered
        assert "santeguard_dispatch_backoff_rooms 8.0" in rendered
        # Failing rooms keep only their head transaction's events in memory.
        assert disp.in_memory <= 8 * 10
        assert disp.in_memory_peak <= disp.max_in_memory_events
        await asyncio.sleep(0.3)  # more retries within the same episode: no new alert
        assert len(alerts) == 8

        handler.failing.clear()  # the device is ready: the 8 rooms catch up, in order
        await disp.wait_idle(timeout=60)
        assert traffic.served(handler, bad + good)
        assert handler.errors == []
        assert handler.count == 3000
        assert disp.stuck_rooms() == []
        assert await pending_txns(db) == 0
        assert "santeguard_dispatch_stuck_rooms 0.0" in metrics.render().decode()
    finally:
        await disp.stop()


async def test_memory_cap_holds_and_order_survives_a_restart(
    db: Database, store: EventQueueStore
) -> None:
    rooms = [f"!r{i}:x" for i in range(60)]
    traffic = Traffic(rooms)
    handler = Handler()
    handler.gate.clear()  # nothing is handled while the backlog builds up
    cap = 200
    metrics = Metrics()
    disp = dispatcher(store, handler, max_in_memory_events=cap, metrics=metrics)
    await disp.start()
    for _ in range(3000):  # one event per transaction: a restart replays none twice
        await deliver(store, disp, traffic.txn_id(), traffic.batch(1))
        assert disp.in_memory <= cap
    handler.gate.set()
    await until(lambda: handler.count >= 1000)
    await disp.stop()  # a restart in the middle of the backlog
    assert disp.in_memory_peak <= cap
    reads = metrics.registry.get_sample_value("santeguard_dispatch_database_reads_total")
    assert reads is not None
    assert reads > 10  # the backlog beyond the cap was read back from the database

    disp = dispatcher(store, handler, max_in_memory_events=cap)
    await disp.start()
    try:
        for _ in range(1000):  # and more arrives while it reads the rest back
            await deliver(store, disp, traffic.txn_id(), traffic.batch(1))
            assert disp.in_memory <= cap
        await disp.wait_idle(timeout=60)
        assert disp.in_memory_peak <= cap
        assert traffic.served(handler, rooms)
        assert handler.errors == []  # once each, in order
        assert handler.count == 4000
        assert await pending_txns(db) == 0
    finally:
        await disp.stop()


async def test_backlog_beyond_the_cap_with_failing_rooms_and_mixed_transactions(
    db: Database, store: EventQueueStore
) -> None:
    """Transactions of many rooms, a backlog far beyond the cap, some rooms failing for a
    while: every event exactly once, in order per room, never more than the cap held."""
    rooms = [f"!m{i}:x" for i in range(40)]
    traffic = Traffic(rooms)
    handler = Handler()
    handler.failing = set(rooms[:5])
    handler.gate.clear()
    cap = 200
    disp = dispatcher(store, handler, max_in_memory_events=cap)
    await disp.start()
    try:
        for _ in range(400):  # 4,000 events in transactions of 10
            await deliver(store, disp, traffic.txn_id(), traffic.batch(10))
            assert disp.in_memory <= cap
        handler.gate.set()
        await until(lambda: traffic.served(handler, rooms[5:]))
        assert not any(r in handler.handled for r in rooms[:5])
        handler.failing.clear()
        await disp.wait_idle(timeout=60)
        assert traffic.served(handler, rooms)
        assert handler.errors == []
        assert disp.in_memory_peak <= cap
        assert await pending_txns(db) == 0
    finally:
        await disp.stop()


@contextmanager
def quiet(logger: str) -> Iterator[None]:
    """Retry warnings off: the log capture would keep every record in memory."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1000
    return 0.0


async def test_memory_stays_flat_while_rooms_fail(db: Database, store: EventQueueStore) -> None:
    """100 rooms served while 8 keep failing: traced memory does not grow with the events.

    In the suite: 6,000 events to warm up, then 24,000 more, measured with tracemalloc.
    ``SANTEGUARD_LONG_TESTS=1``: 100,000 events paced over ten minutes while the 8 rooms
    fail the whole time, then they recover; the figures are printed (run with ``-s``).
    """
    bad = [f"!bad{i}:x" for i in range(8)]
    good = [f"!ok{i}:x" for i in range(100)]
    traffic = Traffic(bad + good, size=1200)  # ~1.9 KB in memory each, as measured
    handler = Handler()
    handler.failing = set(bad)
    cap = 1000
    disp = dispatcher(
        store, handler, max_in_memory_events=cap, max_backoff_seconds=0.5, stuck_after_seconds=1
    )
    warm, total, per_txn = 6_000, (100_000 if LONG else 30_000), 20
    pace = 600 / ((total - warm) / per_txn) if LONG else 0.0
    with quiet("santeguard.dispatch"), quiet("aiosqlite"):
        await disp.start()
        try:
            for _ in range(warm // per_txn):
                await deliver(store, disp, traffic.txn_id(), traffic.batch(per_txn))
            await until(lambda: traffic.served(handler, good))
            gc.collect()
            tracemalloc.start()
            rss_before = _rss_mb()
            before = tracemalloc.get_traced_memory()[0]
            for _ in range((total - warm) // per_txn):
                await deliver(store, disp, traffic.txn_id(), traffic.batch(per_txn))
                if pace:
                    await asyncio.sleep(pace)
            await until(lambda: traffic.served(handler, good), timeout=600 if LONG else 60)
            gc.collect()
            after, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rss_after = _rss_mb()
            print(
                f"\n{total - warm} events, 8 of 108 rooms failing: traced "
                f"{before / 1e6:.2f} -> {after / 1e6:.2f} MB (peak {peak / 1e6:.2f} MB), "
                f"RSS {rss_before:.0f} -> {rss_after:.0f} MB, events in memory "
                f"{disp.in_memory} (peak {disp.in_memory_peak}, cap {cap}), "
                f"stuck {len(disp.stuck_rooms())}"
            )
            # The previous dispatcher kept the failing rooms' 2,224 events: +3.4 MB here.
            # Bounded, what is left after the run is small (measured: +0.02 to +0.23 MB),
            # and the peak is at most the cap's worth of events plus slack: the dispatcher
            # steps aside while transactions keep coming, so the cap is reached (measured
            # 5.3 MB then; unbounded, the 24,000 events would hold ~46 MB).
            assert after - before < cap * 1_000 + 500_000
            assert peak < cap * 5_000 + 2_000_000
            assert disp.in_memory_peak <= cap
            assert len(disp.stuck_rooms()) == 8
            assert not any(r in handler.handled for r in bad)
            assert handler.errors == []

            handler.failing.clear()
            await disp.wait_idle(timeout=600 if LONG else 60)
            assert traffic.served(handler, bad + good)
            assert handler.errors == []
            assert await pending_txns(db) == 0
        finally:
            if tracemalloc.is_tracing():
                tracemalloc.stop()
            await disp.stop()


async def test_lone_surrogate_room_id_is_dead_lettered_without_blocking(
    db: Database, store: EventQueueStore
) -> None:
    """Stored directly (the intake refuses it now): valid JSON, but no database can store
    the room ID as text. The handler fails, the dead letter is written anyway, the room
    and the others move on, and nothing loops."""
    bad_room = "!\ud800:x"
    calls: dict[str, int] = {}
    handled: list[str] = []

    async def handler(ev: dict[str, Any]) -> bool:
        calls[ev["event_id"]] = calls.get(ev["event_id"], 0) + 1
        if ev["type"] == "m.room.member":  # like a store keyed by room: cannot encode it
            await db.execute(
                "INSERT INTO room (room_id, updated_at) VALUES ($1, $2)", ev["room_id"], 0
            )
        handled.append(ev["event_id"])
        return True

    events = [event(bad_room, 1, "m.room.member"), event(bad_room, 2), event("!fine:x", 1)]
    body = json.dumps({"events": events}).encode()  # ensure_ascii: the "\ud800" escape
    assert b"\\ud800" in body
    seq = await store.store_transaction("poison", body, len(events))
    assert seq is not None

    disp = Dispatcher(store, handler, Metrics(), max_attempts=3, retry_base_seconds=0.01)
    await disp.start()  # reads it back from the database
    try:
        await disp.wait_idle(timeout=30)
    finally:
        await disp.stop()
    assert calls[events[0]["event_id"]] == 3  # max_attempts, then the dead letter: no loop
    assert sorted(handled) == sorted([events[1]["event_id"], events[2]["event_id"]])
    row = await db.fetchrow("SELECT room_id, event_type, attempts, last_error FROM dead_letter")
    assert row is not None
    assert row["room_id"] == "!\\ud800:x"  # its ASCII escape, which any database stores
    assert (row["event_type"], row["attempts"]) == ("m.room.member", 3)
    assert await db.fetchval("SELECT status FROM txn WHERE seq = $1", seq) == "handled"


class BrokenDeadLetters(EventQueueStore):
    async def dead_letter(
        self, txn_seq: int, event: dict[str, Any], attempts: int, error: str
    ) -> None:
        raise ValueError("dead_letter table is broken (test)")


async def test_event_is_given_up_when_its_dead_letter_cannot_be_written(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    store = BrokenDeadLetters(db, sqlite_synchronous="normal")
    await store.open()
    metrics = Metrics()
    handled: list[str] = []
    poisoned = event("!p:x", 0)
    poisoned["content"]["body"] = "SECRET-CONTENT"

    async def handler(ev: dict[str, Any]) -> bool:
        if ev["event_id"] == poisoned["event_id"]:
            raise RuntimeError("poisoned (test)")
        handled.append(ev["event_id"])
        return True

    events = [poisoned, event("!p:x", 1), event("!q:x", 0)]
    disp = Dispatcher(store, handler, metrics, max_attempts=2, retry_base_seconds=0.01)
    await disp.start()
    try:
        with caplog.at_level(logging.WARNING, logger="santeguard.dispatch"):
            await deliver(store, disp, "t1", events)
            await disp.wait_idle(timeout=30)
    finally:
        await disp.stop()
        await store.close()
    assert sorted(handled) == sorted([events[1]["event_id"], events[2]["event_id"]])
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    given_up = [m for m in errors if "Giving up" in m]
    assert len(given_up) == 1
    assert poisoned["event_id"] in given_up[0]
    assert "!p:x" in given_up[0]
    assert all("SECRET-CONTENT" not in r.getMessage() for r in caplog.records)
    rendered = metrics.render().decode()
    assert "santeguard_events_abandoned_total 1.0" in rendered
    assert 'santeguard_events_handled_total{outcome="failed"} 1.0' in rendered
    assert await pending_txns(db) == 0


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("!room:example.org", "!room:example.org"),
        ("!salle-é:santé.fr", "!salle-é:santé.fr"),
        ("!\ud800:x", "!\\ud800:x"),
        ("a\x00b", "a\\u0000b"),
        (None, "null"),
        (42, "42"),
        ("x" * 300, "x" * 255),
    ],
)
def test_storable_text(value: object, stored: str) -> None:
    assert storable_text(value) == stored
    stored.encode("utf-8")  # always encodable


def test_error_text_is_cut_to_its_limit() -> None:
    assert len(storable_text("e" * 10_000, 500)) == 500
