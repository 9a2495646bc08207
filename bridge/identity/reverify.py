"""Scheduled re-verification of every bound practitioner against the directory.

A practitioner the directory no longer lists as active is unbound and removed from every
protected room, and the admins are told. A directory that cannot be reached never
removes anyone (and the gate admits no one new on its say-so): the run stops, alerts,
and is retried sooner than the normal period.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from mautrix.util.async_db import Connection

from bridge.core.ports import AlertPort, AuditPort, MemberEnforcerPort
from bridge.identity.bind import Binder
from bridge.identity.model import DirectoryUnavailable
from bridge.identity.store import VerificationStore

log = logging.getLogger("santeguard.reverify")


@dataclass
class ReverifyReport:
    checked: int = 0
    refreshed: int = 0
    deactivated: list[str] = field(default_factory=list)
    removed_from: dict[str, list[str]] = field(default_factory=dict)
    unreachable: bool = False


class Reverifier:
    """Re-checks every binding; run by the scheduler (daily, and after each new import)."""

    def __init__(
        self,
        store: VerificationStore,
        binder: Binder,
        enforcer: MemberEnforcerPort,
        audit: AuditPort,
        alerts: AlertPort,
        *,
        period_seconds: float,
        retry_seconds: float = 300,
    ) -> None:
        self._store = store
        self._binder = binder
        self._enforcer = enforcer
        self._audit = audit
        self._alerts = alerts
        self._period = period_seconds
        self._retry = retry_seconds
        self._lock = asyncio.Lock()

    async def run_once(self) -> ReverifyReport:
        async with self._lock:
            return await self._run()

    async def scheduled(self) -> float:
        """One scheduled run; returns the delay until the next (sooner after an outage)."""
        report = await self.run_once()
        return self._retry if report.unreachable else self._period

    async def _unbind(self, user_id: str) -> list[str]:
        """Unbind and plan the removals in one transaction; the rooms to leave."""
        removed: list[str] = []

        async def plan(conn: Connection) -> None:
            removed.extend(
                await self._enforcer.plan_unbound(
                    conn, user_id, trigger="reverification", reason="no_longer_active"
                )
            )

        await self._store.unbind(user_id, then=plan)
        self._enforcer.wake()
        return removed

    async def _run(self) -> ReverifyReport:
        report = ReverifyReport()
        for user_id, current in sorted(self._store.verified_users().items()):
            try:
                outcome = await self._binder.verify(
                    user_id, current.idnps, source=current.source, actor="reverify", refresh=True
                )
            except ValueError:
                outcome = None  # a stored identifier no directory can hold: not found
            except DirectoryUnavailable as e:
                report.unreachable = True
                await self._audit.record(
                    "reverify",
                    "reverify.directory_unreachable",
                    subject=user_id,
                    details={"error": str(e)[:200]},
                )
                await self._alerts.alert("alert.reverify_unreachable")
                return report
            if outcome is not None and outcome.status == "gone":
                continue  # unbound meanwhile (e.g. `!sg unverify`)
            report.checked += 1
            if outcome is None or not outcome.ok:
                removed = await self._unbind(user_id)
                report.deactivated.append(user_id)
                report.removed_from[user_id] = removed
                await self._audit.record(
                    "reverify",
                    "identity.deactivated",
                    subject=user_id,
                    details={
                        "idnps": current.idnps,
                        "rooms_removed": len(removed),
                        "found": outcome is not None and outcome.status != "not_found",
                    },
                )
                name = f"{current.first_name} {current.last_name}".strip()
                await self._alerts.alert(
                    "alert.reverify_deactivated", user=user_id, name=name, count=len(removed)
                )
                continue
            report.refreshed += 1
        await self._audit.record(
            "reverify",
            "reverify.completed",
            details={
                "checked": report.checked,
                "refreshed": report.refreshed,
                "deactivated": len(report.deactivated),
            },
        )
        return report
