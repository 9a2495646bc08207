"""The SQLite writer's commits without their own fsync (``synced=False``).

The gate's refusals use them: the call returns once the row is committed (another
connection reads it), and the WAL is fsync'd soon after — by the writer itself, or by
the next synced commit, whose fsync covers the earlier frames. The connection runs with
``synchronous=NORMAL`` throughout: with FULL configured, the writer fsyncs the WAL itself
after every commit that must be on disk before its call returns (``wal_syncs`` counts
those fsyncs).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from bridge.db.replay import replayable
from bridge.db.sqlite_writer import SYNC_LATER_S, SQLiteWriter

NORMAL = 1


@pytest.fixture
async def writer(tmp_path: Path) -> SQLiteWriter:
    path = str(tmp_path / "w.db")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, mode INTEGER)")
    conn.close()
    w = SQLiteWriter(path, "FULL")
    yield w
    await w.close()


def insert(n: int):  # type: ignore[no-untyped-def]
    def work(c: sqlite3.Connection) -> int:
        mode = int(c.execute("PRAGMA synchronous").fetchone()[0])
        c.execute("INSERT INTO t VALUES (?, ?)", (n, mode))
        return mode

    return work


def rows(writer: SQLiteWriter) -> list[tuple[int, int]]:
    conn = sqlite3.connect(writer._path)
    try:
        return conn.execute("SELECT id, mode FROM t ORDER BY id").fetchall()
    finally:
        conn.close()


async def settle() -> None:
    await asyncio.sleep(SYNC_LATER_S * 10)


async def test_unsynced_call_is_committed_then_the_wal_is_fsynced(writer: SQLiteWriter) -> None:
    assert await writer.run(insert(1), synced=False) == NORMAL
    assert rows(writer) == [(1, NORMAL)]  # committed when run returned
    assert writer.wal_syncs == 0
    await settle()
    assert writer.wal_syncs == 1
    await writer.run(insert(2))  # synced: its own fsync of the WAL, before it returns
    assert writer.wal_syncs == 2
    await settle()
    assert writer.wal_syncs == 2
    # No commit switches the setting: each synced one is followed by the writer's fsync.
    assert int(writer._connection().execute("PRAGMA synchronous").fetchone()[0]) == NORMAL


async def test_a_synced_call_returns_after_an_fsync_that_began_after_its_commit(
    writer: SQLiteWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[tuple[int, int]]] = []
    fsync = writer._fsync_wal

    def watched() -> None:
        seen.append(rows(writer))  # what another connection sees when the fsync starts
        fsync()

    monkeypatch.setattr(writer, "_fsync_wal", watched)
    await writer.run(insert(1))
    assert seen == [[(1, NORMAL)]]  # the WAL write on the loop, then its fsync
    assert not writer._unsynced


async def test_a_synced_commit_covers_earlier_unsynced_ones(writer: SQLiteWriter) -> None:
    await writer.run(insert(1), synced=False)
    await writer.run(insert(2))  # one fsync of the whole WAL, frame 1 included
    assert writer.wal_syncs == 1
    assert not writer._unsynced
    await settle()
    assert writer.wal_syncs == 1
    assert rows(writer) == [(1, NORMAL), (2, NORMAL)]


async def test_a_failed_fsync_fails_the_synced_call_and_is_tried_again(
    writer: SQLiteWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsync = writer._fsync_wal
    calls = 0

    def failing_once() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError(5, "Input/output error")
        fsync()

    monkeypatch.setattr(writer, "_fsync_wal", failing_once)
    with pytest.raises(OSError):
        await writer.run(insert(1))  # an intake answers 503: nothing is acked
    assert writer._unsynced
    await settle()  # the writer's own retry
    assert not writer._unsynced
    assert calls == 2


async def test_concurrent_synced_calls_all_return_on_disk(writer: SQLiteWriter) -> None:
    await asyncio.gather(*(writer.run(insert(n)) for n in range(20)))
    assert [r[0] for r in rows(writer)] == list(range(20))
    assert not writer._unsynced


def hold_fsync(writer: SQLiteWriter, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """The WAL's fsync waits for the returned event, in the writer's thread: calls made
    meanwhile queue up (nothing is written to the WAL while it is fsynced)."""
    release = threading.Event()
    fsync = writer._fsync_wal

    def held() -> None:
        release.wait(10)
        fsync()

    monkeypatch.setattr(writer, "_fsync_wal", held)
    return release


async def test_a_group_with_any_synced_call_is_synced(
    writer: SQLiteWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = hold_fsync(writer, monkeypatch)
    loop = asyncio.get_running_loop()
    first = loop.create_task(writer.run(insert(0)))
    await asyncio.sleep(0.05)
    calls = [
        loop.create_task(writer.run(insert(1), synced=False)),
        loop.create_task(writer.run(insert(2))),
    ]
    await asyncio.sleep(0.05)
    assert writer.wal_syncs == 0
    release.set()
    assert await first == NORMAL
    assert await asyncio.gather(*calls) == [NORMAL, NORMAL]  # one group
    # ...whose commit was followed by an fsync of the WAL before the calls returned.
    assert writer.wal_syncs == 2
    assert not writer._unsynced
    await settle()
    assert writer.wal_syncs == 2


async def test_an_unsynced_only_group_is_synced_later(
    writer: SQLiteWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = hold_fsync(writer, monkeypatch)
    loop = asyncio.get_running_loop()
    first = loop.create_task(writer.run(insert(0)))
    await asyncio.sleep(0.05)
    calls = [loop.create_task(writer.run(insert(n), synced=False)) for n in (1, 2)]
    await asyncio.sleep(0.05)
    release.set()
    await first
    assert await asyncio.gather(*calls) == [NORMAL, NORMAL]
    await settle()
    assert writer.wal_syncs == 2
    assert not writer._unsynced


def on_thread(n: int, seen: list[str]):  # type: ignore[no-untyped-def]
    def work(c: sqlite3.Connection) -> None:
        seen.append(threading.current_thread().name)
        c.execute("INSERT INTO t VALUES (?, ?)", (n, 0))

    return work


async def test_a_queued_group_is_written_on_the_loop_and_fsynced_in_the_thread(
    writer: SQLiteWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls queued behind an fsync are written on the event loop once it is done: a
    commit in the writer's thread would wait for the GIL after every SQLite call."""
    release = hold_fsync(writer, monkeypatch)
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    first = loop.create_task(writer.run(insert(0)))
    await asyncio.sleep(0.05)
    calls = [
        loop.create_task(writer.run(on_thread(1, seen), synced=False)),
        loop.create_task(writer.run(on_thread(2, seen))),
    ]
    await asyncio.sleep(0.05)
    assert seen == []  # nothing written while the WAL is fsynced
    release.set()
    await first
    await asyncio.gather(*calls)
    assert seen == [threading.current_thread().name] * 2
    assert writer.commits == 2  # the two queued calls in one group
    assert writer.wal_syncs == 2 and not writer._unsynced


async def test_a_failed_fsync_fails_every_synced_group_call(
    writer: SQLiteWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    fsync = writer._fsync_wal
    calls = 0

    def held_then_failing() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            release.wait(10)
            fsync()
        elif calls == 2:
            raise OSError(5, "Input/output error")
        else:
            fsync()

    monkeypatch.setattr(writer, "_fsync_wal", held_then_failing)
    loop = asyncio.get_running_loop()
    first = loop.create_task(writer.run(insert(0)))
    await asyncio.sleep(0.05)
    queued = [loop.create_task(writer.run(insert(n))) for n in (1, 2)]
    await asyncio.sleep(0.05)
    release.set()
    await first
    for task in queued:  # committed, but not known to be on disk: neither is acked
        with pytest.raises(OSError):
            await task
    assert writer._unsynced
    await settle()  # the writer's own retry
    assert not writer._unsynced


async def test_a_busy_database_sends_the_group_to_the_thread(writer: SQLiteWriter) -> None:
    """Another connection holds the write lock: the inline try would fail at once
    (busy_timeout 0); the thread retries until the lock is free."""
    other = sqlite3.connect(writer._path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    seen: list[str] = []
    task = asyncio.get_running_loop().create_task(writer.run(on_thread(1, seen)))
    await asyncio.sleep(0.1)
    assert not task.done() and writer.busy_retries > 0
    other.execute("COMMIT")
    other.close()
    await task
    assert seen and seen[0].startswith("sg-sqlite-writer")
    assert [r[0] for r in rows(writer)] == [1] and not writer._unsynced


async def test_close_fsyncs_what_is_still_unsynced(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, mode INTEGER)")
    conn.close()
    w = SQLiteWriter(path, "FULL")
    await w.run(insert(1), synced=False)
    await w.close()  # before the timer
    assert w.wal_syncs == 1


async def test_with_normal_everything_is_unsynced_and_nothing_extra_runs(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "n.db")
    sqlite3.connect(path).execute("CREATE TABLE t (id INTEGER PRIMARY KEY, mode INTEGER)")
    w = SQLiteWriter(path, "NORMAL")
    try:
        assert await w.run(insert(1), synced=False) == NORMAL
        assert await w.run(insert(2)) == NORMAL
        await settle()
        assert w.wal_syncs == 0
    finally:
        await w.close()


async def test_writes_made_while_handling_a_stored_event_are_synced_later(
    writer: SQLiteWriter,
) -> None:
    """The dispatcher marks its handler calls ``replayable`` (bridge.db.replay): what
    they write is written again by a replay, so it skips its own fsync; a task started
    there inherits the mark. Outside, and when the caller says ``synced=True``, synced."""

    async def fsynced_before_return(call: Any) -> bool:
        before = writer.wal_syncs
        await call
        return writer.wal_syncs > before

    assert await fsynced_before_return(writer.run(insert(1)))
    with replayable():
        assert not await fsynced_before_return(writer.run(insert(2)))
        assert not await fsynced_before_return(asyncio.create_task(writer.run(insert(3))))
        assert await fsynced_before_return(writer.run(insert(4), synced=True))
    assert await fsynced_before_return(writer.run(insert(5)))
