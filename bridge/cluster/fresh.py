"""The gate on a replica: it decides only on a snapshot it knows is fresh.

A replica whose change feed has not been confirmed for ``max_staleness_seconds`` may
have missed a change another replica made (a ``!sg unverify``): it refuses every
callback until the feed is back, rather than admit on what may be stale (fail closed).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Protocol

from bot.i18n import Translator
from bridge.core.antispam import GateDecision, GatePort
from bridge.ops.metrics import Metrics

log = logging.getLogger("santeguard.cluster")


class Freshness(Protocol):
    @property
    def stale(self) -> bool: ...

    def staleness(self) -> float: ...


class FreshGate:
    """Wraps the gate: refuses while the snapshot may be stale, else delegates."""

    def __init__(
        self,
        gate: GatePort,
        feed: Freshness,
        text: Translator,
        metrics: Metrics,
        *,
        language: str = "fr",
    ) -> None:
        self._gate = gate
        self._feed = feed
        self._text = text
        self._metrics = metrics
        self._language = language

    async def decide(self, callback: str, payload: dict[str, Any]) -> GateDecision:
        if self._feed.stale:
            lag = self._feed.staleness()
            seconds = "?" if math.isinf(lag) else str(int(lag))
            self._metrics.stale_refusals.labels(callback=callback).inc()
            log.warning("Refused %s: the gate's snapshot may be %s s stale", callback, seconds)
            return GateDecision.refused(
                self._text.t("cluster.stale", self._language, seconds=seconds)
            )
        return await self._gate.decide(callback, payload)
