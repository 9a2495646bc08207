"""Stopping background tasks reliably on Python 3.11.

``asyncio.wait_for`` on 3.11 returns normally when its inner call completes in the same
loop turn as a cancellation (fixed in 3.12), so a loop that polls through it can swallow
the one ``cancel()`` meant to stop it and go back to sleep: ``await task`` after
``task.cancel()`` then waits forever. A stop must therefore cancel until the task is done.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("santeguard.tasks")


def honour_cancellation() -> None:
    """Stop now if this task was cancelled and something swallowed it.

    On Python 3.11 ``asyncio.wait_for``, which aiosmtplib uses for every reply, returns
    normally when the reply and the cancellation land together (fixed in 3.12): a relay
    probe came back normally from 38 of 300 cancellations. The scheduler then waited
    forever for a job that went on (SantéGuard never stopped), and the worker would have
    gone through its batch and the whole queue.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stop_task(task: asyncio.Task[Any] | None, *, retry_seconds: float = 0.5) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again each ``retry_seconds``
    if it swallowed the cancellation. Its failure, if any, is logged, never raised: a stop
    goes on with the other parts."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=retry_seconds)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("Task %s ended with %s while stopping", task.get_name(), type(exc).__name__)
