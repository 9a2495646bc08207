"""The leader's lease: exactly one replica dispatches events, runs jobs and the bot's device.

On PostgreSQL the lease is a session-level advisory lock held on a connection of its
own. PostgreSQL releases it the moment that connection ends, so a leader that is
SIGKILLed, or whose host vanishes, frees it for a follower, which polls every
``lease_poll_seconds``. A leader checks its connection every ``heartbeat_seconds``;
when the check fails it has lost the lease (or cannot know it still holds it) and
``on_lost`` runs: the process stops leading at once, then campaigns again as a
follower, so a lone replica leads again once the database is back (a database restart
used to make it exit and wait for its supervisor). A new leader waits
``takeover_grace_seconds`` before it leads, so a leader cut off from the database has
noticed and stopped by then.

On SQLite there is one process: ``SoloLease`` leads at once and never loses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import asyncpg

log = logging.getLogger("santeguard.cluster")

#: The advisory lock: ("santeguard-leader", the schema), each hashed to 32 bits, so
#: deployments in different schemas of one database each have their own leader.
LOCK_KEY = "hashtext('santeguard-leader'), hashtext(current_schema())"

Callback = Callable[[], Awaitable[None]]


class Lease(Protocol):
    @property
    def leader(self) -> bool: ...

    async def start(self, on_elected: Callback, on_lost: Callback) -> None: ...

    async def stop(self) -> None: ...


class SoloLease:
    """One process (SQLite): it leads from the start."""

    def __init__(self) -> None:
        self._leader = False

    @property
    def leader(self) -> bool:
        return self._leader

    async def start(self, on_elected: Callback, on_lost: Callback) -> None:
        self._leader = True
        await on_elected()

    async def stop(self) -> None:
        self._leader = False


class PgLease:
    """The advisory lock on a connection of its own; see the module docstring."""

    def __init__(
        self,
        dsn: str,
        *,
        replica_id: str,
        poll_seconds: float = 1.0,
        heartbeat_seconds: float = 1.0,
        grace_seconds: float = 2.0,
    ) -> None:
        self._dsn = dsn
        self.replica_id = replica_id
        self._poll = poll_seconds
        self._heartbeat = heartbeat_seconds
        self._grace = grace_seconds
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._leader = False

    @property
    def leader(self) -> bool:
        return self._leader

    async def start(self, on_elected: Callback, on_lost: Callback) -> None:
        """Lead now if the lease is free (after the grace), else campaign in the
        background; ``on_elected`` runs once elected, ``on_lost`` if the lease is lost."""
        try:
            got = await self._try_acquire()
        except Exception as e:  # any failure: not the leader (fail closed)
            log.warning("Cannot reach the database for the leader's lease: %s", _why(e))
            await self._close()
            got = False
        if got:
            await self._elected(on_elected)
        self._task = asyncio.create_task(
            self._run(on_elected, on_lost, campaign=not got), name="santeguard-lease"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close()
        self._leader = False

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)
            if not conn.is_closed():
                conn.terminate()

    async def _try_acquire(self) -> bool:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self._dsn, timeout=10)
        got = await asyncio.wait_for(
            self._conn.fetchval(f"SELECT pg_try_advisory_lock({LOCK_KEY})"), self._heartbeat * 5
        )
        return bool(got)

    async def _still_held(self) -> bool:
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        held = await asyncio.wait_for(
            conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid() AND objsubid = 2 "
                "AND classid::bigint = hashtext('santeguard-leader')::bigint & 4294967295 "
                "AND objid::bigint = hashtext(current_schema())::bigint & 4294967295"
            ),
            # The whole heartbeat may be spent waiting: past it, the lease is lost.
            max(self._heartbeat, 0.5),
        )
        return bool(held)

    async def _elected(self, on_elected: Callback) -> None:
        log.info(
            "Replica %s holds the leader's lease; leading in %.1f s", self.replica_id, self._grace
        )
        await asyncio.sleep(self._grace)
        self._leader = True
        await on_elected()

    async def _run(self, on_elected: Callback, on_lost: Callback, *, campaign: bool) -> None:
        while True:
            led = not campaign
            try:
                if campaign:
                    await self._campaign()
                    led = True
                    await self._elected(on_elected)
                await self._hold()
                why = "database connection lost"
            except Exception as e:  # leading stops; the task must not die
                log.exception("Replica %s: the lease's task failed", self.replica_id)
                why = _why(e)
            self._leader = False
            await self._close()
            if led:
                log.critical(
                    "Replica %s lost the leader's lease (%s); it stops leading and campaigns again",
                    self.replica_id,
                    why,
                )
                try:
                    await on_lost()
                except Exception:  # logged; the campaign must go on
                    log.exception("Replica %s: stopping leadership failed", self.replica_id)
            # The followers first: a leader cut off from the database while they were not
            # campaigns again only after the grace (then a poll), so one of them, if any,
            # has taken the lease by then.
            await asyncio.sleep(self._grace)
            campaign = True

    async def _campaign(self) -> None:
        """Return once this replica holds the lock (tried every ``lease_poll_seconds``)."""
        unreachable = False
        while True:
            await asyncio.sleep(self._poll)
            try:
                if await self._try_acquire():
                    return
                unreachable = False
            except Exception as e:  # the campaign goes on, whatever failed
                if not unreachable:  # once per outage, not once per poll
                    log.warning("Cannot reach the database for the leader's lease: %s", _why(e))
                unreachable = True
                await self._close()

    async def _hold(self) -> None:
        """Return once the lease is lost (or cannot be confirmed within a heartbeat).

        Any failure of the check counts as a loss (fail closed): asyncpg raises more than
        its documented errors on a connection cut mid-query (``InternalClientError``
        "cannot switch to state ...", seen in CI), and a heartbeat task that died on one
        would have left this replica leading with nothing watching its lease."""
        while True:
            await asyncio.sleep(self._heartbeat)
            try:
                held = await self._still_held()
            except Exception as e:  # see the docstring
                log.warning("The leader's lease check failed: %s", _why(e))
                held = False
            if not held:
                return


def _why(e: BaseException) -> str:
    """The error's type and text; a DSN never appears in asyncpg's messages."""
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
