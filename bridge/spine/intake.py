"""Whether the intake is storing a transaction: the dispatcher steps aside meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: How long ingest counts as under way after a transaction is stored (``IntakeActivity``).
INGEST_GRACE_S = 0.002


class IntakeActivity:
    """Whether ingest is under way: while it is, the dispatcher steps aside.

    Ingest comes first because the homeserver waits for each ack before it sends the
    next transaction, and because a commit that runs in the writer's thread needs the
    GIL back after every SQLite call: an event loop busy with handlers can hold it for
    the whole switch interval each time (measured: a 0.4 ms commit took 26 ms). The
    dispatcher's room workers check ``busy`` between events and ``wait_idle`` then.

    Ingest stays busy for ``grace`` seconds after a transaction is stored: a homeserver
    with a backlog sends the next one as soon as it has the ack, and handlers that
    start in that gap would hold its ack back (measured: 0.10 of the bare handler's
    rate without the grace, 0.27 with 2 ms). ``MAX_STEP_ASIDE_S`` in the dispatcher
    (0.5 s) bounds how long a stream of transactions can hold the handlers off.

    Waiting costs nothing per transaction: workers wait on one event, set by one timer
    when the grace has run out with nothing stored meanwhile. (Each worker used to poll,
    waking twice per transaction: with ten rooms waiting, twenty wake-ups, each creating
    a task, between one ack and the next.)
    """

    def __init__(self, grace: float = INGEST_GRACE_S) -> None:
        self._in_flight = 0
        self._quiet = asyncio.Event()  # set: nothing stored for ``grace``
        self._quiet.set()
        self._grace = grace
        self._until = 0.0  # perf_counter time the grace after the last commit ends
        self._timer: asyncio.TimerHandle | None = None

    @property
    def busy(self) -> bool:
        return self._in_flight > 0 or time.perf_counter() < self._until

    @contextmanager
    def storing(self) -> Iterator[None]:
        self._in_flight += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._until = time.perf_counter() + self._grace
                if self._timer is None:
                    self._arm()

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._until - time.perf_counter())
        self._timer = loop.call_later(delay, self._grace_over)

    def _grace_over(self) -> None:
        """The one timer: quiet if nothing was stored since; else the next commit's end,
        or the grace it started, re-arms it."""
        self._timer = None
        if self._in_flight:
            return  # its end arms the timer again
        if time.perf_counter() < self._until:
            self._arm()
            return
        self._quiet.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until ingest is idle; False if ``timeout`` passed first (the dispatcher
        then handles a slice anyway: a stream of ingest never starves it)."""
        if not self.busy:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._quiet.wait()
        except TimeoutError:
            return not self.busy
        return True
