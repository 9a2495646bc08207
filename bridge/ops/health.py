"""Readiness: each named check answers whether its dependency can be used right now."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

log = logging.getLogger("santeguard.health")

Check = Callable[[], Awaitable[bool]]


class Readiness:
    def __init__(self, checks: Mapping[str, Check]) -> None:
        self._checks = dict(checks)

    async def __call__(self) -> dict[str, bool]:
        results: dict[str, bool] = {}
        for name, check in self._checks.items():
            try:
                results[name] = await check()
            except Exception as e:
                log.debug("Readiness check %s failed: %s", name, type(e).__name__)
                results[name] = False
        return results
