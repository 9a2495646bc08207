"""``TurnBudget``: room workers share a time budget per turn of the event loop, renewed
only after the callbacks queued for the next turn (an ack's I/O) have run."""

from __future__ import annotations

import asyncio
import time

from bridge.spine.dispatch.rooms import TurnBudget


def burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_the_budget_is_spent_then_renewed_a_turn_later() -> None:
    budget = TurnBudget(0.001)
    assert not budget.spent()  # the first look starts the budget
    burn(0.0005)
    assert not budget.spent()
    burn(0.001)
    assert budget.spent()
    assert budget.spent()  # still this turn: every worker stops
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not budget.spent()


async def test_callbacks_queued_meanwhile_run_before_the_renewal() -> None:
    budget = TurnBudget(0.0001)
    loop = asyncio.get_running_loop()
    budget.spent()
    burn(0.0005)
    assert budget.spent()
    seen: list[bool] = []
    loop.call_soon(lambda: seen.append(budget.spent()))  # stands for an ack's callback
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert seen == [True]  # it ran while the workers were still held back
    assert not budget.spent()


async def test_workers_sharing_a_budget_give_the_loop_back() -> None:
    """Ten workers whose handlers never suspend: an ack queued among them waits for at
    most about one budget of their work, not for every worker's slice."""
    budget = TurnBudget(0.001)
    handled = 0
    ack_after: list[int] = []

    async def worker() -> None:
        nonlocal handled
        for _ in range(200):
            while budget.spent():  # noqa: ASYNC110 (a yield, as RoomWorkers does)
                await asyncio.sleep(0)
            burn(0.0001)  # a handler that does not suspend
            handled += 1

    workers = [asyncio.create_task(worker()) for _ in range(10)]
    await asyncio.sleep(0)
    asyncio.get_running_loop().call_soon(lambda: ack_after.append(handled))
    await asyncio.gather(*workers)
    assert handled == 2000
    assert ack_after and ack_after[0] <= 30  # ~1 ms of 0.1 ms handlers, not 2,000
