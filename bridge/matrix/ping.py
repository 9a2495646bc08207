"""Watching the homeserver, and the appservice ping that ends its backoff.

Why: when SantéGuard is down (a crash, a restart, a network cut), Synapse marks the
appservice down and retries its pending transactions with a growing backoff (2, 4, 8,
16 s … up to about 8.5 min). Back up, SantéGuard would wait out that backoff before
receiving what happened meanwhile (13.6 s measured after a 20 s outage). A successful
appservice ping (spec v1.7, ``POST /_matrix/client/v1/appservice/{id}/ping``) makes
Synapse retry at once: ``AppservicePingRestServlet.on_POST`` calls
``scheduler.txn_ctrl.force_retry(app_service)`` after the ping came back
(synapse/rest/client/appservice_ping.py), which cancels the recoverer's timer and runs
its retry now (``_Recoverer.force_retry``, synapse/appservice/scheduler.py).

:class:`HomeserverWatch` probes the homeserver every ``interval`` seconds and tells its
listeners of each transition (the first probe counts as one). :class:`AppservicePinger`
is such a listener: when the homeserver is (again) reachable it pings, and retries at
the next probe period (doubling up to ``MAX_RETRY_SECONDS`` while it keeps failing) until
a ping succeeds, the homeserver goes down, or it says it has no ping endpoint. Nothing
here raises into its caller: a failing probe is "down", a failing listener or ping is
logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter

from bridge.core.tasks import stop_task
from bridge.matrix.client import AppservicePingError

log = logging.getLogger("santeguard.homeserver")

Probe = Callable[[], Awaitable[bool]]
Listener = Callable[[bool], Awaitable[None]]
Ping = Callable[[str], Awaitable[float]]  # ping(txn_id) -> seconds

#: A ping failing again and again (a wrong URL in the registration) is retried at most
#: this far apart, not every probe.
MAX_RETRY_SECONDS = 30.0


class HomeserverWatch:
    """Probes the homeserver every ``interval`` s; calls listeners on each transition."""

    def __init__(self, probe: Probe, *, interval: float) -> None:
        self._probe = probe
        self._interval = interval
        self._listeners: list[Listener] = []
        self._up: bool | None = None
        self._task: asyncio.Task[None] | None = None

    def add_listener(self, cb: Listener) -> None:
        """``cb(up)`` is awaited on each transition, in the order listeners were added."""
        self._listeners.append(cb)

    @property
    def up(self) -> bool | None:
        """The last probe's answer; None before the first probe."""
        return self._up

    @property
    def interval(self) -> float:
        return self._interval

    async def start(self) -> None:
        """Start probing in the background; the first probe runs at once."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="homeserver-watch")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)  # cancels again if a wait_for swallowed it (3.11)

    async def probe_once(self) -> bool:
        """Probe now and notify the listeners if the answer changed."""
        try:
            up = bool(await self._probe())
        except Exception as e:  # a probe that raises says the homeserver is not usable
            log.debug("Homeserver probe failed: %s", type(e).__name__)
            up = False
        if up != self._up:
            before, self._up = self._up, up
            if before is not None or not up:
                log.log(
                    logging.INFO if up else logging.WARNING,
                    "Homeserver %s",
                    "reachable again" if up else "unreachable",
                )
            for listener in list(self._listeners):
                try:
                    await listener(up)
                except Exception:
                    log.exception("A homeserver watch listener failed")
        return up

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            await self.probe_once()
            await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - started)))


class PingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pings = Counter(
            "santeguard_appservice_pings_total",
            "Appservice pings asked of the homeserver, by outcome (ok, failed, unsupported).",
            ["outcome"],
            registry=registry,
        )


class AppservicePinger:
    """Pings when the homeserver becomes reachable; retries every ``interval`` while it
    stays reachable and the ping fails (a listener of :class:`HomeserverWatch`)."""

    def __init__(
        self,
        ping: Ping,
        metrics: PingMetrics,
        *,
        interval: float,
        replica: str = "",
    ) -> None:
        self._ping = ping
        self._metrics = metrics
        self._interval = interval
        self._replica = replica
        self._task: asyncio.Task[None] | None = None
        self._count = 0
        self.last_duration: float | None = None
        self.succeeded = asyncio.Event()  # set after the first successful ping

    async def on_change(self, up: bool) -> None:
        """The watch's listener: start pinging when up, stop trying when down."""
        if up:
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._ping_until_ok(), name="appservice-ping")
        else:
            await self.stop()

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)  # cancels again if a wait_for swallowed it (3.11)

    async def _ping_until_ok(self) -> None:
        failures = 0
        while True:
            self._count += 1
            txn_id = f"santeguard-{self._replica}-{int(time.time() * 1000)}-{self._count}"
            try:
                duration = await self._ping(txn_id)
            except AppservicePingError as e:
                if e.unsupported:
                    self._metrics.pings.labels(outcome="unsupported").inc()
                    log.warning(
                        "The homeserver has no appservice ping (spec v1.7): after an outage, "
                        "pending transactions arrive only after its retry backoff"
                    )
                    return
                failures += 1
                self._metrics.pings.labels(outcome="failed").inc()
                log.log(
                    logging.WARNING if failures == 1 else logging.DEBUG,
                    "Appservice ping failed (%s); retrying in %.0f s",
                    e,
                    self._retry_delay(failures),
                )
            except Exception as e:  # never let a ping take the service down
                failures += 1
                self._metrics.pings.labels(outcome="failed").inc()
                log.warning("Appservice ping failed: %s", type(e).__name__)
            else:
                self._metrics.pings.labels(outcome="ok").inc()
                self.last_duration = duration
                self.succeeded.set()
                log.info(
                    "Appservice ping answered in %.0f ms: the homeserver delivers pending "
                    "transactions now",
                    duration * 1000,
                )
                return
            await asyncio.sleep(self._retry_delay(failures))

    def _retry_delay(self, failures: int) -> float:
        return float(min(MAX_RETRY_SECONDS, self._interval * 2.0 ** min(failures - 1, 8)))
