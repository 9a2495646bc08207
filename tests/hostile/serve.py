"""Driving a real SantéGuard with hypothesis: examples in a worker thread, the server on
the test's event loop (hypothesis' ``@given`` runs synchronously)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import yarl

T = TypeVar("T")


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def run_examples(check: Callable[[Callable[[Coroutine[Any, Any, T]], T]], None]) -> None:
    """Runs ``check(run)`` in a thread; ``run(coro)`` executes ``coro`` on this loop."""
    loop = asyncio.get_running_loop()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        await loop.run_in_executor(pool, check, run)


def request(
    session: aiohttp.ClientSession, method: str, url: str, body: bytes, token: str
) -> Awaitable[Reply]:
    """One request with ``url`` already percent-encoded (hostile paths are sent as is)."""

    async def go() -> Reply:
        async with session.request(
            method,
            yarl.URL(url, encoded=True),
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        ) as resp:
            return Reply(resp.status, await resp.read())

    return go()


class ErrorLog(logging.Handler):
    """Collects ERROR records of SantéGuard's loggers: an unhandled error is what a 500
    (or a dead letter) comes from, and must not follow from bad input."""

    def __init__(self, *warning_loggers: str) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self._warnings = warning_loggers  # loggers whose warnings count too

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("santeguard") and (
            record.levelno >= logging.ERROR or record.name in self._warnings
        ):
            self.records.append(record)

    def messages(self) -> list[str]:
        return [
            f"{r.name}: {r.getMessage()} {r.exc_info[1]!r}"
            if r.exc_info
            else f"{r.name}: {r.getMessage()}"
            for r in self.records
        ]

    def __enter__(self) -> ErrorLog:
        root = logging.getLogger()
        self._level = root.level
        root.setLevel(min(root.level or logging.WARNING, logging.WARNING))
        root.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._level)
