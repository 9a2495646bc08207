"""A gate that allows everything: for benchmarks that measure the bare callback path."""

from __future__ import annotations

from typing import Any

from bridge.core.antispam import GateDecision


class AllowAllGate:
    """Placeholder policy: every callback is allowed."""

    async def decide(self, callback: str, payload: dict[str, Any]) -> GateDecision:
        return GateDecision.allowed()
