"""Stopping a background task that swallows a cancellation (Python 3.11's wait_for)."""

from __future__ import annotations

import asyncio

from bridge.core.tasks import stop_task


async def test_stop_task_cancels_again_a_task_that_swallowed_the_first_cancel() -> None:
    swallowed = 0

    async def poller() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed == 0:  # what wait_for does on 3.11 when both land together
                    swallowed += 1
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
                    continue
                raise

    task = asyncio.create_task(poller())
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_task(task, retry_seconds=0.05), 10)
    assert task.cancelled() and swallowed == 1


async def test_stop_task_logs_a_failure_instead_of_raising(caplog: object) -> None:
    async def fails() -> None:
        raise ValueError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await stop_task(task)
    await stop_task(None)
    assert task.done() and isinstance(task.exception(), ValueError)
