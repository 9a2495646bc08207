"""The leader's lease on PostgreSQL: one leader; when its connection dies, a follower
takes over within a poll and the grace, and the old leader is told at its next beat; a
leader that lost the lease campaigns again, and leads again when the lease is free."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from bridge.cluster.lease import PgLease


class Calls:
    def __init__(self) -> None:
        self.elected = asyncio.Event()
        self.lost = asyncio.Event()
        self.elected_at = 0.0
        self.elections = 0

    async def on_elected(self) -> None:
        self.elected_at = time.monotonic()
        self.elections += 1
        self.elected.set()

    async def on_lost(self) -> None:
        self.lost.set()


def _lease(uri: str, name: str) -> PgLease:
    return PgLease(uri, replica_id=name, poll_seconds=0.2, heartbeat_seconds=0.2, grace_seconds=0.5)


async def test_one_leader_then_takeover_when_its_connection_dies(pg_uri: str) -> None:
    a, b = _lease(pg_uri, "a"), _lease(pg_uri, "b")
    ca, cb = Calls(), Calls()
    try:
        await a.start(ca.on_elected, ca.on_lost)
        assert a.leader and ca.elected.is_set()  # free lease: led at start, after the grace
        await b.start(cb.on_elected, cb.on_lost)
        await asyncio.sleep(1.0)  # five polls
        assert not b.leader and not cb.elected.is_set()

        # The leader's backend dies (as when its process is SIGKILLed or its host lost).
        pid = a._conn.get_server_pid() if a._conn is not None else None
        assert pid is not None
        admin = await asyncpg.connect(pg_uri)
        killed_at = time.monotonic()
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
        await admin.close()
        await asyncio.wait_for(ca.lost.wait(), 5)
        assert not a.leader
        await asyncio.wait_for(cb.elected.wait(), 5)
        assert b.leader
        # Failover: a poll (0.2 s) and the grace (0.5 s), with slack for a busy machine.
        assert cb.elected_at - killed_at < 4
    finally:
        await a.stop()
        await b.stop()


async def test_a_lone_leader_that_lost_its_connection_leads_again(pg_uri: str) -> None:
    """A database restart cuts the leader's connection: it stops leading, and, being the
    only replica, takes the lease again once it can (it used to exit the process)."""
    a = _lease(pg_uri, "a")
    ca = Calls()
    try:
        await a.start(ca.on_elected, ca.on_lost)
        assert a.leader and ca.elections == 1
        ca.elected.clear()
        pid = a._conn.get_server_pid() if a._conn is not None else None
        assert pid is not None
        admin = await asyncpg.connect(pg_uri)
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
        await admin.close()
        await asyncio.wait_for(ca.lost.wait(), 5)
        await asyncio.wait_for(ca.elected.wait(), 5)
        assert a.leader and ca.elections == 2
        assert a._conn is not None and a._conn.get_server_pid() != pid  # a new session
    finally:
        await a.stop()


async def test_a_follower_that_lost_the_lease_stays_one_while_it_is_held(pg_uri: str) -> None:
    a, b = _lease(pg_uri, "a"), _lease(pg_uri, "b")
    ca, cb = Calls(), Calls()
    try:
        await a.start(ca.on_elected, ca.on_lost)
        await b.start(cb.on_elected, cb.on_lost)
        pid = a._conn.get_server_pid() if a._conn is not None else None
        assert pid is not None
        admin = await asyncpg.connect(pg_uri)
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
        await admin.close()
        await asyncio.wait_for(cb.elected.wait(), 5)
        await asyncio.sleep(1.0)  # five of a's polls
        assert b.leader and not a.leader and ca.elections == 1
    finally:
        await a.stop()
        await b.stop()


async def test_stopping_releases_the_lease(pg_uri: str) -> None:
    a, b = _lease(pg_uri, "a"), _lease(pg_uri, "b")
    ca, cb = Calls(), Calls()
    try:
        await a.start(ca.on_elected, ca.on_lost)
        await b.start(cb.on_elected, cb.on_lost)
        assert a.leader and not b.leader
        await a.stop()
        await asyncio.wait_for(cb.elected.wait(), 5)
        assert b.leader and not ca.lost.is_set()  # a clean stop is not a loss
    finally:
        await a.stop()
        await b.stop()


async def test_another_schema_has_its_own_leader(pg_uri: str, pg_database: str) -> None:
    """Two deployments in two schemas of one database do not share a lease."""
    other = pg_uri.replace("search_path=", "search_path=x")
    schema = other.rsplit("=", 1)[1]
    admin = await asyncpg.connect(pg_database)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    await admin.close()
    a, b = _lease(pg_uri, "a"), _lease(other, "b")
    ca, cb = Calls(), Calls()
    try:
        await a.start(ca.on_elected, ca.on_lost)
        await b.start(cb.on_elected, cb.on_lost)
        assert a.leader and b.leader
    finally:
        await a.stop()
        await b.stop()


async def test_two_replicas_starting_on_an_empty_database_both_start(
    pg_database: str,
) -> None:
    """The schema upgrade runs under a lock: neither replica fails on the other's tables."""
    from bridge.db.database import open_database, start_database

    schema = "u_" + str(abs(hash(time.monotonic())))[:8]
    admin = await asyncpg.connect(pg_database)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    await admin.close()
    uri = f"{pg_database}?search_path={schema}"
    dbs = [open_database(uri), open_database(uri)]
    try:
        await asyncio.gather(*(start_database(db, uri) for db in dbs))
        assert await dbs[0].fetchval("SELECT COUNT(*) FROM job_run") == 0
    finally:
        for db in dbs:
            await db.stop()


class _Flaky(PgLease):
    """Its heartbeat check fails once with an error outside asyncpg's documented set,
    as a connection cut mid-query did in CI ("cannot switch to state 12")."""

    failures = 1

    async def _still_held(self) -> bool:
        if self.leader and self.failures:
            self.failures -= 1
            raise asyncpg.exceptions._base.InternalClientError(
                "cannot switch to state 12; another operation (2) is in progress"
            )
        return await super()._still_held()


async def test_an_unexpected_heartbeat_error_is_a_loss_not_a_dead_watch(pg_uri: str) -> None:
    """Fail closed: the replica stops leading, says so, and leads again on a new session
    (the task used to die, leaving the replica leading with nothing watching)."""
    a = _Flaky(pg_uri, replica_id="a", poll_seconds=0.2, heartbeat_seconds=0.2, grace_seconds=0.5)
    ca = Calls()
    try:
        await a.start(ca.on_elected, ca.on_lost)
        ca.elected.clear()
        await asyncio.wait_for(ca.lost.wait(), 5)
        await asyncio.wait_for(ca.elected.wait(), 5)
        assert a.leader and ca.elections == 2 and a.failures == 0
    finally:
        await a.stop()


async def test_a_failing_election_callback_releases_the_lease(pg_uri: str) -> None:
    """A leader whose start-up fails (say, its audit write) gives the lease up and
    campaigns again rather than holding it without leading."""
    a, b = _lease(pg_uri, "a"), _lease(pg_uri, "b")
    ca, cb = Calls(), Calls()
    fails = [True]

    async def elected_once_failing() -> None:
        if fails:
            fails.pop()
            raise RuntimeError("audit write failed")
        await cb.on_elected()

    try:
        await a.start(ca.on_elected, ca.on_lost)
        await b.start(elected_once_failing, cb.on_lost)
        pid = a._conn.get_server_pid() if a._conn is not None else None
        assert pid is not None
        admin = await asyncpg.connect(pg_uri)
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
        await admin.close()
        # b is elected, fails to lead, lets go; then one of them leads for good.
        await asyncio.wait_for(cb.lost.wait(), 5)
        for _ in range(50):
            if a.leader or b.leader:
                break
            await asyncio.sleep(0.2)
        assert a.leader != b.leader
    finally:
        await a.stop()
        await b.stop()
