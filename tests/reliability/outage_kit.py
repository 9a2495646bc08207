"""What the outage tests share: bounded waits, SantéGuard's HTTP endpoints as a client
sees them, the admin alerts it raised, and the process's memory over an outage.

Why memory measured in this process: the SantéGuards under test run in it
(in-process), so a leak during an outage (a queue growing per refused request, a retry
loop keeping what it failed) shows as growth from before to after. Two measures: the
RSS (what an operator sees), and the Python heap allocated since the "before" sample
and still alive (``tracemalloc``), which the long mode bounds. pytest keeps every log
record of a test in memory (to show them if it fails); a long outage logs thousands of
refusals, so the long mode drops those records before each sample, lest the harness's
memory be counted as SantéGuard's. Figures are printed (``-s``) with the ``[outage]``
prefix for docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

LONG = os.environ.get("SANTEGUARD_LONG_TESTS") == "1"
PATIENCE = 60.0  # upper bound of every wait (a loaded machine is slow, not wrong)
#: Long mode: the Python heap may grow this much from before an outage to after it
#: (caches warming up, a connection pool refilled), not more: a leak per refused
#: request, retry or held mail over minutes of outage exceeds it.
HEAP_GROWTH_BOUND_MB = 20.0


def figure(name: str, value: object) -> None:
    print(f"[outage] {name}: {value}")


async def until(
    check: Callable[[], Awaitable[object]], what: str, timeout: float = PATIENCE
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _drop_captured_logs() -> None:
    """Empty pytest's in-memory capture of this test's log records (long mode only)."""
    for handler in logging.getLogger().handlers:
        if type(handler).__name__ == "LogCaptureHandler":
            handler.reset()  # type: ignore[attr-defined]


class Memory:
    """RSS and traced-heap samples at named moments ("before", "during", "after");
    ``check`` prints them and, in the long mode, bounds the heap's growth."""

    def __init__(self, test: str) -> None:
        self.test = test
        self.rss: dict[str, float] = {}
        self.heap: dict[str, float] = {}
        self._started = False

    def sample(self, moment: str) -> None:
        if LONG:
            _drop_captured_logs()
        # Traced in the long mode only: tracing slows every allocation of the process.
        if LONG and moment == "before" and not tracemalloc.is_tracing():
            tracemalloc.start()
            self._started = True
        gc.collect()
        self.rss[moment] = round(rss_mb(), 1)
        if tracemalloc.is_tracing():
            self.heap[moment] = round(tracemalloc.get_traced_memory()[0] / 2**20, 2)

    def close(self) -> None:
        """Stop tracing if ``sample`` started it (a failed test must not leave the rest
        of the session traced: it costs time)."""
        if self._started:
            tracemalloc.stop()
            self._started = False

    def check(self) -> None:
        self.close()
        figure(f"{self.test} RSS MB", self.rss)
        figure(f"{self.test} traced heap MB (allocated since 'before', alive)", self.heap)
        growth = self.heap.get("after", 0.0) - self.heap.get("before", 0.0)
        figure(f"{self.test} heap growth MB", round(growth, 2))
        if LONG:
            assert growth < HEAP_GROWTH_BOUND_MB, f"the heap grew {growth:.1f} MB"


class AlertLog(logging.Handler):
    """The admin alerts raised (``AdminAlerts`` logs each one before posting it)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("ALERT:"):
            self.texts.append(message)

    def matching(self, *fragments: str) -> list[str]:
        return [t for t in self.texts if all(f in t for f in fragments)]


@contextmanager
def alert_log() -> Iterator[AlertLog]:
    handler = AlertLog()
    logger = logging.getLogger("santeguard.alerts")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def fragment(template: str) -> str:
    """The fixed start of a catalog text (before its first placeholder)."""
    return template.split("{", 1)[0]


class Endpoints:
    """SantéGuard's HTTP interface as the homeserver and a monitoring system use it."""

    def __init__(self, base: str, *, hs_token: str, gate_token: str, gate_path: str) -> None:
        self.base = base
        self._hs = {"Authorization": f"Bearer {hs_token}"}
        self._gate = {"Authorization": f"Bearer {gate_token}"}
        self._gate_path = gate_path
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))

    async def close(self) -> None:
        await self._http.close()

    async def ready(self) -> tuple[int, dict[str, Any]]:
        async with self._http.get(f"{self.base}/ready") as resp:
            return resp.status, json.loads(await resp.text())

    async def metric(self, name: str, **labels: str) -> float | None:
        async with self._http.get(f"{self.base}/metrics") as resp:
            text = await resp.text()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return None

    async def put_txn(self, txn_id: str, events: list[dict[str, Any]]) -> int:
        url = f"{self.base}/_matrix/app/v1/transactions/{txn_id}"
        async with self._http.put(url, json={"events": events}, headers=self._hs) as resp:
            return resp.status

    async def gate_join(self, user: str, room: str = "!any:santeguard.test") -> int:
        url = f"{self.base}{self._gate_path}/user_may_join_room"
        body = {"user": user, "room": room, "is_invited": True}
        async with self._http.post(url, json=body, headers=self._gate) as resp:
            return resp.status
