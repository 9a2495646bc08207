"""The change feed: every replica's in-memory snapshots follow the database.

Triggers (bridge/db/upgrade/v08_cluster.py) ``NOTIFY santeguard_changes`` with
``schema:table`` on every committed write to a table a snapshot mirrors, whoever wrote it (another
replica, a CLI import). The feed LISTENs on a connection of its own and reloads the
snapshots of each table named, one reload at a time per table and always *after* the
notification, so the last reload reads the last commit.

The bound: a change is applied everywhere within one reload of its notification
(milliseconds). Behind it, the whole snapshot is reloaded every ``refresh_seconds``,
and after any reconnection. The feed is *confirmed* by a round trip on its connection
every ``heartbeat_seconds``; past ``max_staleness_seconds`` without one the replica may
have missed a change, and ``stale`` is true: the gate then refuses (fails closed).

``txn`` notifications (a transaction stored by any replica) go to ``on_txn``: the
leader's dispatcher reads the new events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import asyncpg

log = logging.getLogger("santeguard.cluster")

CHANNEL = "santeguard_changes"
TXN = "txn"  # the payload of a stored transaction

Reload = Callable[[], Awaitable[None]]


class _TableReload:
    """One table's reloads: sequential, coalesced, each one after the request."""

    def __init__(self, table: str, reloads: tuple[Reload, ...]) -> None:
        self.table = table
        self._reloads = reloads
        self._wanted = asyncio.Event()
        self.count = 0
        self.failing_since: float | None = None  # monotonic time of the first failure

    def request(self) -> None:
        self._wanted.set()

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()  # a request arriving during the reload runs one more
            try:
                for reload in self._reloads:
                    await reload()
                self.count += 1
                self.failing_since = None
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Could not reload %s; retrying", self.table)
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                await asyncio.sleep(0.5)
                self._wanted.set()


class SoloFeed:
    """One process: its own writes are its snapshot; never stale."""

    stale = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def staleness(self) -> float:
        return 0.0


class PgChangeFeed:
    def __init__(
        self,
        dsn: str,
        tables: Mapping[str, tuple[Reload, ...]],
        *,
        on_txn: Callable[[], None] | None = None,
        heartbeat_seconds: float = 1.0,
        refresh_seconds: float = 60.0,
        max_staleness_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dsn = dsn
        self._tables = {t: _TableReload(t, r) for t, r in tables.items()}
        self.on_txn = on_txn
        self._heartbeat = heartbeat_seconds
        self._refresh = refresh_seconds
        self._max_stale = max_staleness_seconds
        self._clock = clock
        self._conn: asyncpg.Connection | None = None
        self._schema = ""
        self._confirmed: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.notifications = 0
        self.reconnects = 0

    # -- state -----------------------------------------------------------------------

    def staleness(self) -> float:
        """Seconds the snapshot may lag behind the database: since the feed was last
        confirmed, or since a table's reload started failing (infinite before start)."""
        if self._confirmed is None:
            return float("inf")
        lag = self._clock() - self._confirmed
        for t in self._tables.values():
            if t.failing_since is not None:
                lag = max(lag, time.monotonic() - t.failing_since)
        return lag

    @property
    def stale(self) -> bool:
        return self.staleness() > self._max_stale

    def reloads(self, table: str) -> int:
        return self._tables[table].count

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and LISTEN, then load everything once (so no change falls between the
        load and the LISTEN); later failures are retried in the background."""
        await self._connect()
        await self._reload_all()
        self._confirmed = self._clock()
        for t in self._tables.values():
            self._tasks.append(asyncio.create_task(t.run(), name=f"santeguard-feed-{t.table}"))
        self._tasks.append(asyncio.create_task(self._watch(), name="santeguard-feed"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._close()

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=10)
        self._schema = str(await conn.fetchval("SELECT current_schema()"))
        await conn.add_listener(CHANNEL, self._notified)
        self._conn = conn

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)
            if not conn.is_closed():
                conn.terminate()

    async def _reload_all(self) -> None:
        for t in self._tables.values():
            for reload in t._reloads:
                await reload()
        if self.on_txn is not None:
            self.on_txn()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        schema, _, name = str(payload).partition(":")
        if schema != self._schema:
            return  # another deployment's schema in the same database
        self.notifications += 1
        if name == TXN:
            if self.on_txn is not None:
                self.on_txn()
            return
        table = self._tables.get(name)
        if table is not None:
            table.request()

    # -- the watch: heartbeat, reconnection, periodic refresh -------------------------

    async def _watch(self) -> None:
        last_refresh = self._clock()
        while True:
            await asyncio.sleep(self._heartbeat)
            try:
                if self._conn is None or self._conn.is_closed():
                    await self._close()
                    await self._connect()
                    self.reconnects += 1
                    log.warning("Change feed reconnected; reloading every snapshot")
                    await self._reload_all()
                    last_refresh = self._clock()
                else:
                    await asyncio.wait_for(self._conn.fetchval("SELECT 1"), self._heartbeat * 2)
                    if self._clock() - last_refresh >= self._refresh:
                        for t in self._tables.values():
                            t.request()
                        last_refresh = self._clock()
                    if self.on_txn is not None:
                        self.on_txn()  # safety net: a lost notification waits one beat
                self._confirmed = self._clock()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("Change feed connection failed (%s); reconnecting", type(e).__name__)
                await self._close()
