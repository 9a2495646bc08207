"""The SQLite writer's commits without their own fsync (``synced=False``).

The gate's refusals use them: the call returns once the row is committed (another
connection reads it), the commit ran with ``synchronous=NORMAL`` while the connection
stays ``FULL`` for everything else, and the WAL is fsync'd soon after — by the writer
itself, or by the next synced commit, whose fsync covers the earlier frames.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bridge.db.replay import replayable
from bridge.db.sqlite_writer import SYNC_LATER_S, SQLiteWriter

FULL, NORMAL = 2, 1


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
    assert await writer.run(insert(2)) == FULL  # the connection is back to FULL
    await settle()
    assert writer.wal_syncs == 1


async def test_a_synced_commit_covers_earlier_unsynced_ones(writer: SQLiteWriter) -> None:
    await writer.run(insert(1), synced=False)
    await writer.run(insert(2))  # fsyncs the whole WAL, frame 1 included
    await settle()
    assert writer.wal_syncs == 0
    assert rows(writer) == [(1, NORMAL), (2, FULL)]


async def test_a_group_with_any_synced_call_is_synced(writer: SQLiteWriter) -> None:
    # Hold the writer's thread busy so that both calls queue into one group.
    gate = asyncio.Event()
    loop = asyncio.get_running_loop()
    block = loop.create_task(
        writer.run(lambda c: asyncio.run_coroutine_threadsafe(gate.wait(), loop).result())
    )
    await asyncio.sleep(0.05)
    calls = [
        loop.create_task(writer.run(insert(1), synced=False)),
        loop.create_task(writer.run(insert(2))),
    ]
    await asyncio.sleep(0.05)
    gate.set()
    await block
    assert await asyncio.gather(*calls) == [FULL, FULL]
    await settle()
    assert writer.wal_syncs == 0


async def test_an_unsynced_only_group_is_synced_later(writer: SQLiteWriter) -> None:
    gate = asyncio.Event()
    loop = asyncio.get_running_loop()
    block = loop.create_task(
        writer.run(lambda c: asyncio.run_coroutine_threadsafe(gate.wait(), loop).result())
    )
    await asyncio.sleep(0.05)
    calls = [loop.create_task(writer.run(insert(n), synced=False)) for n in (1, 2)]
    await asyncio.sleep(0.05)
    gate.set()
    await block
    assert await asyncio.gather(*calls) == [NORMAL, NORMAL]
    await settle()
    assert writer.wal_syncs == 1


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
    there inherits the mark. Outside, and when the caller says ``synced=True``, FULL."""
    assert await writer.run(insert(1)) == FULL
    with replayable():
        assert await writer.run(insert(2)) == NORMAL
        assert await asyncio.create_task(writer.run(insert(3))) == NORMAL
        assert await writer.run(insert(4), synced=True) == FULL
    assert await writer.run(insert(5)) == FULL
