"""A dedicated SQLite connection for the transaction hot path.

mautrix's SQLite pool is one connection shared by every query, so a homeserver
transaction's commit would queue behind the dispatcher's reads. This writer owns the
writes to ``txn`` (insert at intake, done marks) on its own connection; reads keep
using the pool (WAL lets them run alongside). Automatic WAL checkpoints are off on this
connection: the application runs them from the pool connection on a timer, so an ack
never pays for copying the WAL back.

With ``synchronous=NORMAL`` a commit is a WAL append without fsync (~0.1 ms), so it runs
inline on the event loop: measured, a hop to a worker thread costs more than that,
because getting the GIL back from a busy event loop can take up to the switch interval.
With ``synchronous=FULL`` every commit waits for an fsync, which must not stall the
loop (the synchronous gate shares it), so writes go to one worker thread, FIFO.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class SQLiteWriter:
    def __init__(self, path: str, synchronous: str = "NORMAL") -> None:
        self._path = path
        self._synchronous = synchronous.upper()
        self._inline = self._synchronous != "FULL"
        self._executor = (
            None
            if self._inline
            else ThreadPoolExecutor(max_workers=1, thread_name_prefix="sg-sqlite-writer")
        )
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._conn = conn
        return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            return fn(self._connection())
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._connection()))

    async def close(self) -> None:
        def _close(conn: sqlite3.Connection) -> None:
            conn.close()

        try:
            if self._conn is not None:
                await self.run(_close)
                self._conn = None
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
