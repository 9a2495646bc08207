"""Outages of the dependencies SantéGuard needs, tracked one state machine per dependency.

Each dependency (``database``, ``homeserver``, ``smtp``, ``imap``, ``directory``…) is
up, down, or not known yet. Its state comes from a probe polled every ``interval``
seconds, from reports pushed by the parts that use it (a directory lookup that failed,
a homeserver watch), or both. A transition is logged and exported
(``santeguard_dependency_up``, ``santeguard_dependency_outages_total``); the admins are
told only about outages that last: once a dependency has been down ``alert_after``
seconds, and again when it is back, with the duration, so a one-second blip costs a
log line, not a page. The homeserver carries the admin room itself: while it is down
nothing can be posted there, so its outage is told once it is back ("was unreachable
from … to …"). ``tells(name)`` says whether this process posts about ``name`` (with
replicas, one voice per outage: see bridge/app/outages.py).

What this does not do: decide. Failing closed is the job of each part (the gate refuses
on a stale snapshot or a failed write, the binder binds nobody without the directory);
this module makes the outage visible (``/ready``'s body, metrics, admin room).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge

from bridge.core.ports import AlertPort
from bridge.core.tasks import honour_cancellation, stop_task

log = logging.getLogger("santeguard.outages")

Probe = Callable[[], Awaitable[bool | None]]
"""True: up; False (or raising): down; None: cannot tell now (e.g. nothing to retry)."""
Listener = Callable[[bool], Awaitable[None]]


class Down(Exception):
    """Raised by a probe to say "down" with a short detail for ``/ready`` (a problem
    code, never a secret)."""


PROBE_TIMEOUT_SECONDS = 10.0


@dataclass
class _State:
    name: str
    probe: Probe | None
    carries_alerts: bool
    up: bool | None = None
    since: float = field(default_factory=time.time)  # wall clock of the last transition
    detail: str | None = None
    alerted: bool = False  # the "down" alert went out (or, for the homeserver, is due)


def _stamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    """A duration readable in both languages: ``2 h 05 min``, ``3 min 20 s``, ``12 s``."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


class Outages:
    """Per-dependency up/down state, with metrics, alerts and a report for ``/ready``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        alerts: AlertPort,
        *,
        interval: float = 2.0,
        alert_after: float = 60.0,
        tells: Callable[[str], bool] = lambda name: True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._alerts = alerts
        self.tells = tells
        self.interval = interval
        self.alert_after = alert_after
        self._clock = clock
        self._deps: dict[str, _State] = {}
        self._listeners: dict[str, list[Listener]] = {}
        self._due: list[tuple[str, dict[str, str]]] = []  # alerts to post, in order
        self._pending: set[asyncio.Task[None]] = set()  # report_soon's
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._up = Gauge(
            "santeguard_dependency_up",
            "1 while a dependency (database, homeserver, smtp, imap, directory) answers, "
            "0 while it is down; absent until it was first checked.",
            ["dependency"],
            registry=registry,
        )
        self._outages = Counter(
            "santeguard_dependency_outages_total",
            "Times a dependency went down (each outage counted once, however long).",
            ["dependency"],
            registry=registry,
        )

    def watch(self, name: str, probe: Probe | None = None, *, carries_alerts: bool = False) -> None:
        """Track ``name``; ``probe`` (polled) may be None for a push-only dependency.
        ``carries_alerts``: the admin room lives on it (the homeserver)."""
        if name not in self._deps:
            self._deps[name] = _State(name, probe, carries_alerts)
        elif probe is not None:
            self._deps[name].probe = probe

    def add_listener(self, name: str, cb: Listener) -> None:
        """``cb(up)`` is awaited after each transition of ``name`` (e.g. re-verify the
        waiting practitioners once the directory is back)."""
        self._listeners.setdefault(name, []).append(cb)

    def up(self, name: str) -> bool | None:
        state = self._deps.get(name)
        return None if state is None else state.up

    async def report(self, name: str, up: bool, detail: str | None = None) -> None:
        """Record what a user of the dependency just saw; alerts as thresholds are met."""
        state = self._deps.get(name)
        if state is None:
            self.watch(name)
            state = self._deps[name]
        async with self._lock:
            changed = self._set(state, up, detail)
            self._check_threshold(state)
        await self._after(state, changed)

    def report_soon(self, name: str, up: bool, detail: str | None = None) -> None:
        """``report`` without waiting: for callers on a latency-bound path (a lookup the
        gate waits for must not wait for an alert to reach the admin room)."""
        task = asyncio.create_task(self.report(name, up, detail))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _after(self, state: _State, changed: bool) -> None:
        """Outside the lock: post what is due, then tell the listeners of a transition."""
        await self._post()
        if not changed:
            return
        for cb in self._listeners.get(state.name, ()):
            try:
                await cb(bool(state.up))
            except Exception:
                log.exception("An outage listener of %s failed", state.name)

    async def _post(self) -> None:
        due, self._due = self._due, []
        for key, params in due:
            await self._alerts.alert(key, **params)

    def _set(self, state: _State, up: bool, detail: str | None) -> bool:
        if state.up is up:
            if not up and detail:
                state.detail = detail
            return False
        self._transition(state, up, detail)
        return True

    def _transition(self, state: _State, up: bool, detail: str | None) -> None:
        now = self._clock()
        before, began = state.up, state.since
        state.up, state.since, state.detail = up, now, (None if up else detail)
        self._up.labels(dependency=state.name).set(1 if up else 0)
        if not up:
            self._outages.labels(dependency=state.name).inc()
            log.warning("Dependency %s is down (%s)", state.name, detail or "no detail")
            return
        if before is None:
            return  # first news, and good: nothing to tell
        lasted = now - began
        log.info("Dependency %s is back after %s", state.name, _duration(lasted))
        # Told if it lasted, even when no poll ran between the two transitions.
        told = state.alerted or lasted >= self.alert_after
        state.alerted = False
        if told and self.tells(state.name):
            params = {"start": _stamp(began), "end": _stamp(now), "duration": _duration(lasted)}
            self._due.append((f"alert.outage_up.{state.name}", params))

    def _check_threshold(self, state: _State) -> None:
        """Tell the admins of an outage that has lasted; never the homeserver's own (it
        would not reach the room: told at recovery instead)."""
        if state.up is not False or state.alerted or state.carries_alerts:
            return
        if self._clock() - state.since < self.alert_after:
            return
        state.alerted = True
        if not self.tells(state.name):
            return
        params = {"since": _stamp(state.since), "duration": _duration(self._clock() - state.since)}
        self._due.append((f"alert.outage_down.{state.name}", params))

    async def poll(self) -> None:
        """One round: run every probe, then the thresholds (push-only ones included)."""
        for state in list(self._deps.values()):
            if state.probe is None:
                continue
            detail: str | None = None
            try:
                result = await asyncio.wait_for(state.probe(), PROBE_TIMEOUT_SECONDS)
            except Down as e:
                result, detail = False, str(e)[:80]
            except Exception as e:  # a probe that fails says "down", whatever the error
                result, detail = False, type(e).__name__
            if result is not None:
                async with self._lock:
                    changed = self._set(state, result, detail)
                await self._after(state, changed)
        async with self._lock:
            for state in list(self._deps.values()):
                self._check_threshold(state)
        await self._post()

    def report_body(self) -> dict[str, dict[str, object]]:
        """For ``/ready``'s body: each dependency's state, and since when if down."""
        now = self._clock()
        body: dict[str, dict[str, object]] = {}
        for name, state in sorted(self._deps.items()):
            entry: dict[str, object] = {"up": state.up}
            if state.up is False:
                entry["since"] = _stamp(state.since)
                entry["down_seconds"] = int(now - state.since)
                if state.detail:
                    entry["detail"] = state.detail
            body[name] = entry
        return body

    def down(self) -> list[str]:
        return sorted(n for n, s in self._deps.items() if s.up is False)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="santeguard-outages")

    async def stop(self) -> None:
        task, self._task = self._task, None
        for t in [task, *self._pending]:
            await stop_task(t)  # the probes' wait_for can swallow one cancel (3.11)

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # never let the watcher die: it is how outages are seen
                log.exception("Outage poll failed")
            honour_cancellation()
            await asyncio.sleep(self.interval)
