"""A dedicated SQLite connection for the transaction hot path, with group commit.

mautrix's SQLite pool is one connection shared by every query, so a homeserver
transaction's commit would queue behind the dispatcher's reads. This writer owns the
hot writes (``txn`` inserts at intake and done marks, audit and ledger rows) on its own
connection; reads keep using the pool (WAL lets them run alongside). Automatic WAL
checkpoints are off on this connection: the application runs them from the pool
connection on a timer, so an ack never pays for copying the WAL back.

**Group commit.** Each call's work runs inside a write transaction and the call returns
once that transaction is committed. Calls that arrive while a commit is in flight wait
for it, then are committed together, in arrival order, in the next transaction: with
``synchronous=FULL`` they share one fsync. Each call of a group runs under its own
savepoint, so one that fails is rolled back alone and the others still commit.

**Where commits run.** With ``synchronous=FULL`` (the default) a commit waits for an
fsync, which must not stall the event loop (the synchronous gate shares it). When
nothing is queued, a call is committed on the event loop without fsync (a WAL append,
~0.1 ms) and the WAL is then fsync'd in the worker thread before ``run`` returns: the
same guarantee as a ``FULL`` commit (the commit frame is on disk before the caller goes
on), for one GIL hand-back in all, where a commit in the thread needs one after every
SQLite call, and while the event loop runs Python without pause each can take the whole
switch interval (which is also why the dispatcher steps aside while ingest is under way,
``bridge.spine.queue.IntakeActivity``). Callers waiting for the same fsync share it.
Otherwise (something queued, an fsync running) the call is queued: the queue is
committed in groups, each on the loop once no fsync is running, then fsync'd in the
thread before its calls return; only a busy database (another connection holding the
lock) sends a group to the thread, which retries there. (The connection itself always
runs with ``synchronous=NORMAL`` and the writer fsyncs the WAL itself: the same
guarantee as a ``FULL`` commit, which fsyncs the WAL after writing the commit frame,
without switching the setting around the commits that need no fsync.) With
``synchronous=NORMAL`` there is no fsync to wait for: the commit is tried inline, and
goes to the thread only when the database is busy. The inline attempt never waits for a
lock (busy_timeout 0): another connection holding the write lock may need this very loop
to reach its COMMIT, so waiting here would deadlock; a busy database sends the call to
the thread, which retries.

**Synced later** (``run(..., synced=False)``). A call that must be committed before its
caller goes on, but whose caller tells no other system "stored" (the gate's refusals:
the homeserver refuses whatever the audit does; whatever a handler of a stored event
writes, which a replay writes again, see ``bridge.db.replay``; done marks), may be
committed without its own fsync: it is in the WAL when ``run`` returns (a crash of
SantéGuard keeps it) and on disk at the next fsync'd commit (any group holding a synced
call fsyncs the whole WAL, earlier frames included) or at the latest ``SYNC_LATER_S``
after, when the writer fsyncs the WAL itself. Only a power loss or OS crash inside that
window can take it back. With ``synchronous=FULL``, such a call alone runs inline, as
with ``NORMAL`` (never while the writer fsyncs the WAL: the write could wait for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from bridge.db.replay import needs_sync

T = TypeVar("T")
BUSY_TIMEOUT_S = 5.0
#: At most this long between a commit without fsync and the WAL's fsync: PostgreSQL's
#: window for the same writes (``synchronous_commit = off``: its WAL writer flushes every
#: ``wal_writer_delay``, 200 ms by default). Each of these fsyncs (a timer, a task, the
#: hand-off to the writer's thread, the fsync) cost 0.3-0.7 ms of CPU on this machine
#: kind: at 50 ms, refusals at 70/s drew 20 a second and 0.28-0.47 ms of CPU per refusal;
#: at 200 ms, 5 a second and 0.14-0.21 ms.
SYNC_LATER_S = 0.2
_Work = Callable[[sqlite3.Connection], Any]
_Outcome = tuple[bool, Any]  # (succeeded, result or exception)


class SQLiteWriter:
    def __init__(self, path: str, synchronous: str = "FULL") -> None:
        self._path = path
        self._synchronous = synchronous.upper()
        self._inline = self._synchronous != "FULL"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sg-sqlite-writer")
        self._conn: sqlite3.Connection | None = None
        self._queue: list[tuple[_Work, asyncio.Future[Any], bool]] = []
        self._flusher: asyncio.Task[None] | None = None
        # Commits without fsync so far, and how many of them are known to be on disk.
        self._written = 0
        self._durable = 0
        self._syncer: asyncio.Task[None] | None = None
        self._wal_sync: asyncio.Task[None] | None = None  # the WAL's fsync, in the thread
        self._dir_synced = False
        self.commits = 0  # transactions committed (a group counts once)
        self.busy_retries = 0  # tries put off because another connection held the lock
        self.wal_syncs = 0  # fsyncs of the WAL the writer made itself (FULL)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            # Always NORMAL: with FULL configured, the writer fsyncs the WAL itself after
            # each commit that must be on disk (``_fsync_wal``, what a FULL commit does),
            # so no commit pays for switching the setting (two statements each).
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA busy_timeout = 0")  # waiting happens in _retry_busy
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._conn = conn
        return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, synced: bool | None = None) -> T:
        """Run ``fn`` in a write transaction; return its result once committed (and, if
        ``synced``, once on disk as ``synchronous`` says; else see the module's doc).
        ``synced`` None: synced unless called while handling a stored event
        (``bridge.db.replay``).

        ``fn`` must not begin or end transactions itself. Calls are committed in order.
        """
        synced = needs_sync(synced)
        if synced and self._synchronous == "FULL":
            # The WAL write on the loop, its fsync in the thread: one GIL hand-back in
            # all, where a commit in the thread needs one per SQLite call.
            done, value = self.try_now(fn, synced=False)
            if done:
                await self.wal_on_disk()
                return value  # type: ignore[no-any-return]
        done, value = self.try_now(fn, synced=synced)
        if done:
            return value  # type: ignore[no-any-return]
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((fn, future, synced))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="santeguard-sqlite-writer")
        return await future

    def try_now(self, fn: _Work, *, synced: bool | None = None) -> tuple[bool, Any]:
        """Commit ``fn`` at once on the event loop if that needs no fsync and nothing is
        queued: ``(True, result)``; ``(False, None)`` if it must go through ``run``
        (a commit with fsync, a busy writer or database). Never suspends."""
        later = not needs_sync(synced) and self._synchronous == "FULL"
        if not (
            (self._inline or later)
            and self._flusher is None
            and not self._queue
            and self._wal_sync is None  # a write to the WAL could wait for it, loop and all
        ):
            return False, None
        try:
            ok, value = self._execute([fn], later=later)[0]
        except sqlite3.OperationalError as e:
            if not _is_busy(e):
                raise
            return False, None
        if later:
            self._sync_soon()
        if ok:
            return True, value
        raise value

    async def executemany(
        self, sql: str, rows: list[tuple[Any, ...]], *, synced: bool | None = None
    ) -> None:
        """Run ``sql`` (with ``$n`` or ``?`` placeholders) for every row, in one commit."""
        query = re.sub(r"\$\d+", "?", sql)
        await self.run(lambda c: c.executemany(query, rows), synced=synced)

    @property
    def _unsynced(self) -> bool:
        """A commit without fsync is in the WAL, not yet known to be on disk."""
        return self._durable < self._written

    def _sync_soon(self) -> None:
        if self._syncer is None:
            self._syncer = asyncio.create_task(self._sync_later(), name="santeguard-wal-sync")

    async def wal_on_disk(self) -> None:
        """Return once every commit made so far is on disk: an fsync of the WAL that
        began after the last of them (one fsync serves every caller waiting for it).
        Raises ``OSError`` if the fsync fails (the commits stay unsynced)."""
        target = self._written
        while self._durable < target:
            if self._wal_sync is None:
                self._wal_sync = asyncio.create_task(
                    self._sync_round(), name="santeguard-wal-fsync"
                )
            await asyncio.shield(self._wal_sync)

    async def _sync_round(self) -> None:
        mark = self._written
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._fsync_wal)
        finally:
            self._wal_sync = None
        self._durable = max(self._durable, mark)

    async def _sync_later(self) -> None:
        """Fsync the WAL ``SYNC_LATER_S`` after a commit without fsync, unless a synced
        commit did it meanwhile; on failure, try again (the commit stays unsynced)."""
        try:
            while self._unsynced:
                await asyncio.sleep(SYNC_LATER_S)
                with contextlib.suppress(OSError):
                    await self.wal_on_disk()
        finally:
            self._syncer = None

    def _fsync_wal(self) -> None:
        fd = os.open(self._path + "-wal", os.O_RDONLY)
        try:
            # As SQLite syncs its WAL on Linux: the data and what finding it needs (the
            # size), not the times.
            os.fdatasync(fd)
        finally:
            os.close(fd)
        if not self._dir_synced:
            # As SQLite does for a WAL it created: its directory entry must be on disk
            # too, or a power loss could take the whole file.
            fd = os.open(os.path.dirname(os.path.abspath(self._path)), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._dir_synced = True
        self.wal_syncs += 1

    async def _flush(self) -> None:
        """Commit what is queued, one group per transaction, until the queue is empty."""
        try:
            while self._queue:
                if self._wal_sync is not None:
                    # Never write while the WAL is being fsync'd (the write could wait
                    # for it, loop and all): calls queued meanwhile form the next group.
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._wal_sync)
                    continue
                group, self._queue = self._queue, []
                outcomes = await self._commit_group(group)
                for (_, future, _), (ok, value) in zip(group, outcomes, strict=True):
                    if future.done():
                        continue  # its caller was cancelled; the work is committed anyway
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._flusher = None

    async def _commit_group(
        self, group: list[tuple[_Work, asyncio.Future[Any], bool]]
    ) -> list[_Outcome]:
        """With ``synchronous=FULL``: the group's WAL write on the loop, then (if any call
        must be on disk) the WAL's fsync in the thread, as ``run`` does for a lone call;
        a commit in the thread would wait for the GIL after every SQLite call, the whole
        switch interval each time the loop is busy (measured in ``bench.transactions``:
        such commits were the ingest's p99). In the thread when the database is busy (it
        retries there) and with ``NORMAL``."""
        fns = [fn for fn, _, _ in group]
        later = self._synchronous == "FULL" and not any(s for _, _, s in group)
        if self._synchronous == "FULL":
            try:
                outcomes = self._execute(fns, later=True)
            except sqlite3.OperationalError as e:
                if not _is_busy(e):
                    return [(False, e)] * len(fns)
            except Exception as e:  # the commit itself failed: every call gets it
                return [(False, e)] * len(fns)
            else:
                self._sync_soon()  # on disk within SYNC_LATER_S, or retried if this fails
                if later:
                    return outcomes
                try:
                    await self.wal_on_disk()
                except OSError as e:  # committed, not known to be on disk: not durable
                    return [(False, e)] * len(fns)
                return outcomes
        try:
            outcomes = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._retry_busy, fns, later
            )
        except Exception as e:  # the commit itself failed: every call gets it
            return [(False, e)] * len(fns)
        if later:
            self._sync_soon()
        return outcomes

    def _execute(self, fns: list[_Work], *, later: bool = False) -> list[_Outcome]:
        """One transaction for ``fns``; a busy database raises before anything is kept.
        With ``synchronous=FULL``: ``later``, commit without fsync; else (in the worker
        thread only) commit, then fsync the WAL, as a FULL commit does."""
        conn = self._connection()
        if self._synchronous != "FULL":
            return self._transaction(conn, fns)
        if later:
            outcomes = self._transaction(conn, fns)
            self._written += 1
            return outcomes
        covered = self._written
        outcomes = self._transaction(conn, fns)
        # Raises OSError if the fsync fails: the callers are told, nothing counts as
        # durable (the commit stays in the WAL, as after a failed FULL commit).
        self._fsync_wal()
        # This fsync covered the earlier frames too.
        self._durable = max(self._durable, covered)
        return outcomes

    def _transaction(self, conn: sqlite3.Connection, fns: list[_Work]) -> list[_Outcome]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            outcomes = [self._one(conn, fn, savepoint=len(fns) > 1) for fn in fns]
            if len(fns) == 1 and not outcomes[0][0]:
                conn.execute("ROLLBACK")
                return outcomes
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.commits += 1
        return outcomes

    @staticmethod
    def _one(conn: sqlite3.Connection, fn: _Work, *, savepoint: bool) -> _Outcome:
        if savepoint:
            conn.execute("SAVEPOINT sg_call")
        try:
            value = fn(conn)
        except sqlite3.OperationalError as e:
            if _is_busy(e):
                raise  # the whole group is retried
            outcome: _Outcome = (False, e)
        except Exception as e:
            outcome = (False, e)
        else:
            if savepoint:
                conn.execute("RELEASE sg_call")
            return (True, value)
        if savepoint:
            conn.execute("ROLLBACK TO sg_call")
            conn.execute("RELEASE sg_call")
        return outcome

    def _retry_busy(self, fns: list[_Work], later: bool = False) -> list[_Outcome]:
        """In the worker thread: retry while another connection holds the lock (5 s max).

        The other connection's commit is short (one fsync, about a millisecond), so the
        first retries come quickly: an ack waits on this."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        delay = 0.0002
        while True:
            try:
                return self._execute(fns, later=later)
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or time.monotonic() > deadline:
                    raise
            self.busy_retries += 1
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    async def close(self) -> None:
        try:
            while self._flusher is not None:
                await asyncio.shield(self._flusher)
            if self._syncer is not None:
                self._syncer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._syncer
            if self._conn is not None:
                await self.wal_on_disk()
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        finally:
            self._executor.shutdown(wait=True)


def _is_busy(e: sqlite3.OperationalError) -> bool:
    return "locked" in str(e) or "busy" in str(e)
