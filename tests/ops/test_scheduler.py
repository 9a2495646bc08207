"""The scheduler: named jobs, failures isolated and retried, early triggers, metrics."""

from __future__ import annotations

import asyncio

import pytest

from bridge.ops.metrics import Metrics
from bridge.ops.scheduler import Job, Scheduler


def _metric(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_a_failing_job_does_not_stop_the_others_and_is_retried() -> None:
    metrics = Metrics()
    scheduler = Scheduler(metrics)
    runs = {"ok": 0, "bad": 0}

    async def ok() -> None:
        runs["ok"] += 1

    async def bad() -> None:
        runs["bad"] += 1
        raise RuntimeError("boom (test)")

    scheduler.add(Job("ok", ok, interval_seconds=0.01, first_delay_seconds=0))
    scheduler.add(Job("bad", bad, interval_seconds=0.01, first_delay_seconds=0))
    scheduler.start()
    try:
        for _ in range(200):
            if runs["ok"] >= 3 and runs["bad"] >= 3:
                break
            await asyncio.sleep(0.01)
    finally:
        await scheduler.stop()
    assert runs["ok"] >= 3 and runs["bad"] >= 3
    assert _metric(metrics, "santeguard_job_runs_total", job="bad", outcome="failed") >= 3
    assert _metric(metrics, "santeguard_job_runs_total", job="bad", outcome="ok") == 0
    assert _metric(metrics, "santeguard_job_runs_total", job="ok", outcome="ok") >= 3
    assert _metric(metrics, "santeguard_job_last_success_timestamp_seconds", job="ok") > 0


async def test_trigger_runs_a_job_early_and_a_returned_delay_is_honoured() -> None:
    scheduler = Scheduler(Metrics())
    ran = asyncio.Event()
    delays: list[float] = []

    async def slow() -> float:
        ran.set()
        return 3600.0  # next run in an hour, unless triggered

    scheduler.add(Job("slow", slow, interval_seconds=3600))
    scheduler.start()
    try:
        await asyncio.sleep(0.05)
        assert not ran.is_set()  # waits its first interval
        scheduler.trigger("slow")
        await asyncio.wait_for(ran.wait(), 2)
        ran.clear()
        await asyncio.sleep(0.05)
        assert not ran.is_set()  # the returned delay (an hour) holds
        delays.append(await scheduler.run_once(Job("x", slow, interval_seconds=1)))
    finally:
        await scheduler.stop()
    assert delays == [3600.0]


async def test_a_job_waits_for_its_start_condition() -> None:
    scheduler = Scheduler(Metrics())
    ready = asyncio.Event()
    ran = asyncio.Event()

    async def job() -> None:
        ran.set()

    scheduler.add(Job("after", job, interval_seconds=60, first_delay_seconds=0, after=ready))
    scheduler.start()
    try:
        await asyncio.sleep(0.05)
        assert not ran.is_set()
        ready.set()
        await asyncio.wait_for(ran.wait(), 2)
    finally:
        await scheduler.stop()


async def test_jobs_are_named_once_and_added_before_start() -> None:
    scheduler = Scheduler(Metrics())

    async def job() -> None:
        return None

    scheduler.add(Job("a", job, interval_seconds=1))
    with pytest.raises(ValueError):
        scheduler.add(Job("a", job, interval_seconds=1))
    scheduler.start()
    try:
        with pytest.raises(RuntimeError):
            scheduler.add(Job("b", job, interval_seconds=1))
    finally:
        await scheduler.stop()
    assert scheduler.jobs == ("a",)
