"""Periodic jobs by name: one small scheduler instead of tick-counting loops.

Each job runs in its own task, so a slow or failing job never delays another; a failure
is logged and counted, and the job runs again after its ``retry_seconds``. A job may
return the delay until its next run (e.g. sooner after a directory outage), may be
triggered early by name, and may wait for a start condition (e.g. the bot being ready).
Runs, failures, durations and last success are in the metrics, labelled by job name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from bridge.ops.metrics import Metrics

log = logging.getLogger("santeguard.scheduler")

JobFn = Callable[[], Awaitable[float | None]]
"""One run; returns the delay until the next run, or None for the job's interval."""


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    run: JobFn
    interval_seconds: float
    retry_seconds: float | None = None  # after a failure; default: the interval
    first_delay_seconds: float | None = None  # default: the interval
    after: asyncio.Event | None = None  # start only once this is set


class Claims(Protocol):
    """Runs claimed in the database, so a job runs once per period across replicas and
    failovers (bridge/cluster/jobs.py)."""

    async def due_in(self, name: str) -> float | None: ...

    async def claim(self, name: str, hold_seconds: float, *, force: bool = False) -> bool: ...

    async def finished(self, name: str, outcome: str, next_in_seconds: float) -> None: ...


#: Jobs at least this far apart are claimed (maintenance: reverify, reconcile, the
#: retention and audit jobs): each runs once per period across replicas and restarts,
#: and a new leader or a restarted process waits until the job is due. Shorter ones
#: (queues whose rows are claimed one by one: enforcement, mail; probes) run at start.
CLAIMED_FROM_SECONDS = 300.0


class Scheduler:
    def __init__(self, metrics: Metrics, claims: Claims | None = None) -> None:
        self._metrics = metrics
        self._claims = claims
        self._jobs: dict[str, Job] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, job: Job) -> None:
        if job.name in self._jobs:
            raise ValueError(f"job {job.name!r} is already scheduled")
        if self._tasks:
            raise RuntimeError("add jobs before the scheduler starts")
        self._jobs[job.name] = job
        self._wake[job.name] = asyncio.Event()

    @property
    def jobs(self) -> tuple[str, ...]:
        return tuple(self._jobs)

    def trigger(self, name: str) -> None:
        """Run job ``name`` as soon as possible (a new import arrived, an admin asked)."""
        self._wake[name].set()

    def start(self) -> None:
        for job in self._jobs.values():
            self._tasks.append(asyncio.create_task(self._loop(job), name=f"santeguard-{job.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _sleep(self, name: str, seconds: float) -> bool:
        """Sleep ``seconds`` or until triggered; True if triggered."""
        wake = self._wake[name]
        woken = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)
            woken = True
        wake.clear()
        return woken

    def _claimed(self, job: Job) -> Claims | None:
        return self._claims if job.interval_seconds >= CLAIMED_FROM_SECONDS else None

    async def _first_delay(self, job: Job) -> float:
        first = job.interval_seconds if job.first_delay_seconds is None else job.first_delay_seconds
        claims = self._claimed(job)
        if claims is not None:
            try:
                due = await claims.due_in(job.name)
            except Exception as e:
                log.warning("Cannot read job %s's schedule (%s)", job.name, type(e).__name__)
                due = None
            if due is not None:  # it ran before, here or on another replica
                return due
        return first

    async def _loop(self, job: Job) -> None:
        if job.after is not None:
            await job.after.wait()
        woken = await self._sleep(job.name, await self._first_delay(job))
        task = asyncio.current_task()
        # ``cancelling()``: a library's ``wait_for`` (Python 3.11) may swallow the
        # cancellation from ``stop``; the loop must still end, or ``stop`` waits forever.
        while task is None or not task.cancelling():
            delay = await self._claimed_run(job, force=woken)
            if task is not None and task.cancelling():
                break
            woken = await self._sleep(job.name, delay)

    async def _claimed_run(self, job: Job, *, force: bool) -> float:
        """Run ``job`` if this replica claims the run; else wait until it is next due."""
        claims = self._claimed(job)
        if claims is None:
            return await self.run_once(job)
        retry = job.retry_seconds if job.retry_seconds is not None else job.interval_seconds
        try:
            if not await claims.claim(job.name, retry, force=force):
                due = await claims.due_in(job.name)
                self._metrics.job_runs.labels(job=job.name, outcome="skipped").inc()
                return job.interval_seconds if due is None else max(due, 1.0)
        except Exception as e:  # no claim, no run: another replica may be running it
            log.warning("Cannot claim job %s (%s); retrying", job.name, type(e).__name__)
            return min(retry, 60.0)
        delay, ok = await self._run(job)
        outcome = "ok" if ok else "failed"
        try:
            await claims.finished(job.name, outcome, delay)
        except Exception as e:
            log.warning("Cannot record job %s's run (%s)", job.name, type(e).__name__)
        return delay

    async def run_once(self, job: Job) -> float:
        """Run ``job`` once, isolated; return the delay until its next run."""
        delay, _ = await self._run(job)
        return delay

    async def _run(self, job: Job) -> tuple[float, bool]:
        started = time.perf_counter()
        try:
            next_delay = await job.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Job %s failed; it runs again later", job.name)
            self._metrics.job_runs.labels(job=job.name, outcome="failed").inc()
            retry = job.retry_seconds if job.retry_seconds is not None else job.interval_seconds
            return retry, False
        self._metrics.job_runs.labels(job=job.name, outcome="ok").inc()
        self._metrics.job_duration.labels(job=job.name).observe(time.perf_counter() - started)
        self._metrics.job_last_success.labels(job=job.name).set(time.time())
        return (job.interval_seconds if next_delay is None else next_delay), True
