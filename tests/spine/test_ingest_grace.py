"""``IntakeActivity``: ingest counts as under way while a transaction is being stored
and for a short grace after it (a homeserver with a backlog sends the next one as soon
as it has the ack), and a stream of transactions never holds the dispatcher off for
longer than the timeout it gives."""

from __future__ import annotations

import asyncio
import time

from bridge.spine.intake import INGEST_GRACE_S, IntakeActivity


async def test_busy_while_storing_and_for_the_grace_after() -> None:
    intake = IntakeActivity(grace=0.05)
    assert not intake.busy
    with intake.storing():
        assert intake.busy
    assert intake.busy  # the grace: the next transaction is expected at once
    await asyncio.sleep(0.07)
    assert not intake.busy


async def test_wait_idle_waits_out_the_grace() -> None:
    intake = IntakeActivity(grace=0.05)
    with intake.storing():
        pass
    start = time.perf_counter()
    assert await intake.wait_idle(1.0)
    assert time.perf_counter() - start >= 0.04
    assert not intake.busy


async def test_a_stream_of_transactions_gives_way_after_the_timeout() -> None:
    intake = IntakeActivity(grace=0.02)
    stop = asyncio.Event()

    async def stream() -> None:
        while not stop.is_set():
            with intake.storing():
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.001)  # well inside the grace

    task = asyncio.create_task(stream())
    try:
        await asyncio.sleep(0.01)
        start = time.perf_counter()
        assert not await intake.wait_idle(0.1)  # still busy: the dispatcher goes on anyway
        assert 0.09 <= time.perf_counter() - start < 0.5
    finally:
        stop.set()
        await task
    assert await intake.wait_idle(1.0)


def test_the_default_grace_is_short() -> None:
    # Long enough to bridge a homeserver's turnaround between two transactions (tenths
    # of a millisecond on loopback), short enough that a lone transaction is handled
    # at once, as a practitioner waits for it.
    assert 0.0005 <= INGEST_GRACE_S <= 0.01
