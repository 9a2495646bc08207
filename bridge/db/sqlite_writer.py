"""A dedicated SQLite connection for the transaction hot path.

mautrix's SQLite pool is one connection shared by every query, so a homeserver
transaction's commit would queue behind the dispatcher's reads. This writer owns the
writes to ``txn`` (insert at intake, done marks) on its own connection; reads keep
using the pool (WAL lets them run alongside). Automatic WAL checkpoints are off on this
connection: the application runs them from the pool connection on a timer, so an ack
never pays for copying the WAL back.

With ``synchronous=NORMAL`` a commit is a WAL append without fsync (~0.1 ms), so it is
tried inline on the event loop first: measured, a hop to a worker thread costs more than
that, because getting the GIL back from a busy event loop can take up to the switch
interval. The inline attempt never waits for a lock (busy_timeout 0): another connection
holding the write lock may need this very loop to reach its COMMIT, so waiting here
would deadlock. When the database is busy, the write is retried in the worker thread,
which may wait. With ``synchronous=FULL`` every commit waits for an fsync, which must
not stall the loop (the synchronous gate shares it), so writes always use the thread.
Calls are serialised (FIFO) either way.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
BUSY_TIMEOUT_S = 5.0


class SQLiteWriter:
    def __init__(self, path: str, synchronous: str = "NORMAL") -> None:
        self._path = path
        self._synchronous = synchronous.upper()
        self._inline = self._synchronous != "FULL"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sg-sqlite-writer")
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA busy_timeout = 0")  # waiting happens in _retry_busy
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._conn = conn
        return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        async with self._lock:
            if self._inline:
                try:
                    return fn(self._connection())
                except sqlite3.OperationalError as e:
                    if not _is_busy(e):
                        raise
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._retry_busy, fn)

    async def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Run ``sql`` (with ``$n`` or ``?`` placeholders) for every row, in one commit."""
        query = re.sub(r"\$\d+", "?", sql)

        def write(c: sqlite3.Connection) -> None:
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany(query, rows)
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

        await self.run(write)

    def _retry_busy(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """In the worker thread: retry while another connection holds the lock (5 s max)."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        delay = 0.001
        while True:
            try:
                return fn(self._connection())
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def close(self) -> None:
        def _close(conn: sqlite3.Connection) -> None:
            conn.close()

        try:
            if self._conn is not None:
                await self.run(_close)
                self._conn = None
        finally:
            self._executor.shutdown(wait=True)


def _is_busy(e: sqlite3.OperationalError) -> bool:
    return "locked" in str(e) or "busy" in str(e)
