"""Scheduled jobs run once per period across replicas and across a takeover."""

from __future__ import annotations

import asyncio

from mautrix.util.async_db import Database

from bridge.cluster.jobs import JobClaims
from bridge.ops.metrics import Metrics
from bridge.ops.scheduler import Job, Scheduler


async def test_two_schedulers_run_a_job_once_per_period(db: Database) -> None:
    runs: list[str] = []

    def job(name: str) -> Job:
        async def run() -> None:
            runs.append(name)
            await asyncio.sleep(0.05)

        return Job("reverify", run, interval_seconds=3600, first_delay_seconds=0)

    first = Scheduler(Metrics(), JobClaims(db, "a"))
    second = Scheduler(Metrics(), JobClaims(db, "b"))
    first.add(job("a"))
    second.add(job("b"))
    first.start()
    second.start()
    await asyncio.sleep(0.5)
    await first.stop()
    await second.stop()
    assert len(runs) == 1, runs

    # A new leader (a third scheduler, as after a failover) waits until the job is due.
    third = Scheduler(Metrics(), JobClaims(db, "c"))
    third.add(job("c"))
    third.start()
    await asyncio.sleep(0.3)
    assert runs == runs[:1]
    # Triggered on purpose (an import arrived, an admin asked): it runs now.
    third.trigger("reverify")
    await asyncio.sleep(0.3)
    await third.stop()
    assert runs[1:] == ["c"]
    row = await db.fetchrow(
        "SELECT runs, replica, last_outcome FROM job_run WHERE name = 'reverify'"
    )
    assert row is not None
    assert (row["runs"], row["replica"], row["last_outcome"]) == (2, "c", "ok")


async def test_a_failed_run_is_due_again_after_its_retry(db: Database) -> None:
    clock = [1_000_000]
    claims = JobClaims(db, "a", clock=lambda: clock[0])
    assert await claims.claim("audit", hold_seconds=600)
    assert not await claims.claim("audit", hold_seconds=600)  # held while it runs
    await claims.finished("audit", "failed", next_in_seconds=60)
    clock[0] += 59_000
    assert not await claims.claim("audit", hold_seconds=600)
    clock[0] += 1_000
    assert await claims.claim("audit", hold_seconds=600)


async def test_short_jobs_are_not_claimed(db: Database) -> None:
    """Queue-draining jobs and probes (seconds to a minute apart) claim their rows, not
    runs, and run at every start: no job_run row."""
    ran = asyncio.Event()

    async def run() -> None:
        ran.set()

    scheduler = Scheduler(Metrics(), JobClaims(db, "a"))
    scheduler.add(Job("enforcement", run, interval_seconds=30, first_delay_seconds=0))
    scheduler.start()
    await asyncio.wait_for(ran.wait(), 5)
    await scheduler.stop()
    assert await db.fetchval("SELECT COUNT(*) FROM job_run") == 0
