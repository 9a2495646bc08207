"""Wires outage tracking (bridge/ops/outages.py) to the parts that see each dependency.

Why here: the tracker is shared code that knows no capability; what counts as "the
database answers", "the relay is down" or "the directory failed" is each capability's
own signal, read here without changing them:

- ``database``: ``SELECT 1`` polled (every replica: each has its own connections);
- ``homeserver``: a listener on ``SanteGuard.homeserver_watch`` (bridge/matrix/ping.py);
- ``smtp`` / ``imap``: the mail health channels (bridge/mail/health.py), which the
  outbox, the relay probe and the IMAP watcher already keep current;
- ``directory`` (FHIR API only; the extract is a table in our own database): every
  lookup the binder makes goes through :class:`WatchedDirectory`, which reports what it
  saw; while the directory is down it retries the last lookup that failed (a failure is
  never cached) to see it come back, then the re-verification job runs at once.

Failing closed stays where it is: a directory that cannot answer binds nobody
(bridge/identity/bind.py), a database that cannot answer leaves the gate stale, so it
refuses (bridge/cluster/fresh.py), and transactions get a 500 the homeserver retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.core.ports import AlertPort
from bridge.identity.model import DirectoryLookup, DirectoryUnavailable, Practitioner
from bridge.identity.sources.fhir import FhirDirectory
from bridge.mail.health import WARNINGS, MailHealth
from bridge.ops.metrics import Metrics
from bridge.ops.outages import Down, Outages, Probe

if TYPE_CHECKING:
    from bridge.app import SanteGuard

#: How often the database and mail channels are polled (cheap: one SELECT 1, dict reads).
POLL_SECONDS = 2.0
#: How long a dependency is down before the admin room is told (blips only logged).
ALERT_AFTER_SECONDS = 60.0


def build_outages(metrics: Metrics, alerts: AlertPort) -> Outages:
    return Outages(metrics.registry, alerts, interval=POLL_SECONDS, alert_after=ALERT_AFTER_SECONDS)


class WatchedDirectory:
    """A ``DirectoryLookup`` that tells the tracker whether the remote directory answered.

    An answer from the client's cache says nothing about the API, so only lookups that
    sent a request count as "up" (``FhirDirectory.requests_sent`` moved).
    """

    def __init__(self, inner: FhirDirectory, outages: Outages) -> None:
        self._inner = inner
        self._outages = outages
        self._retry: str | None = None  # the last IDNPS whose lookup failed

    async def lookup(self, idnps: str) -> Practitioner | None:
        sent = self._inner.requests_sent
        try:
            found = await self._inner.lookup(idnps)
        except DirectoryUnavailable as e:
            self._retry = idnps
            self._outages.report_soon("directory", False, getattr(e, "reason", "unavailable"))
            raise
        if self._inner.requests_sent != sent:
            self._outages.report_soon("directory", True)
        return found

    async def search(
        self, name: str, profession: str | None, city: str | None, limit: int
    ) -> list[Practitioner]:
        sent = self._inner.requests_sent
        try:
            found = await self._inner.search(name, profession, city, limit)
        except DirectoryUnavailable as e:
            self._outages.report_soon("directory", False, getattr(e, "reason", "unavailable"))
            raise
        if self._inner.requests_sent != sent:
            self._outages.report_soon("directory", True)
        return found

    async def probe(self) -> bool | None:
        """While down: try the lookup that failed again (never cached, so it reaches the
        API). Up or unknown: nothing to do, the lookups themselves report."""
        if self._outages.up("directory") is not False or self._retry is None:
            return None
        try:
            await self._inner.lookup(self._retry)
        except DirectoryUnavailable as e:
            raise Down(getattr(e, "reason", "unavailable")) from None
        except ValueError:
            return None  # cannot happen for an IDNPS that was looked up; not an outage
        return True


def watched_directory(directory: DirectoryLookup, outages: Outages) -> DirectoryLookup:
    """The remote FHIR directory, watched; a local source (the extract) as it is."""
    if isinstance(directory, FhirDirectory):
        watched = WatchedDirectory(directory, outages)
        outages.watch("directory", watched.probe)
        return watched
    return directory


def _mail_probe(health: MailHealth, channel: str) -> Probe:
    async def probe() -> bool:
        problem = health.problem(channel)
        if problem is not None and problem not in WARNINGS:
            raise Down(problem)
        return True

    return probe


async def start_outages(app: SanteGuard) -> None:
    """Register every dependency's signal, then start polling (after the HTTP site: the
    homeserver watch is already running and its current answer is taken as a report)."""
    outages = app.outages
    cluster = app.cluster

    def tells(name: str) -> bool:
        """With replicas, the leader alone posts (they all see the same homeserver, relay
        and directory), except about the database: no one leads while it is gone, and
        each replica reports its own connections."""
        return not cluster.shared or name == "database" or cluster.lease.leader

    outages.tells = tells

    async def database() -> bool:
        await app.db.fetchval("SELECT 1")
        return True

    outages.watch("database", database)
    health = app.mail.health
    if health is not None:
        for channel in ("smtp", "imap"):
            outages.watch(channel, _mail_probe(health, channel))

    async def directory_changed(up: bool) -> None:
        if up:  # those refused meanwhile are re-checked now, not at the next period
            app.scheduler.trigger("reverify")

    outages.add_listener("directory", directory_changed)

    async def homeserver(up: bool) -> None:
        await outages.report("homeserver", up)

    outages.watch("homeserver", carries_alerts=True)
    app.homeserver_watch.add_listener(homeserver)
    if app.homeserver_watch.up is not None:
        await outages.report("homeserver", app.homeserver_watch.up)
    await outages.start()
