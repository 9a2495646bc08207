"""Scheduled re-verification of every bound practitioner against the directory.

A practitioner the directory no longer lists as active is unbound and removed from every
protected room, and the admins are told. A directory that cannot be reached never
removes anyone (and the gate admits no one new on its say-so): the run stops, alerts,
and is retried sooner than the normal period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bridge.core.ports import AuditPort
from bridge.identity.model import DirectoryLookup, DirectoryUnavailable, Verification

log = logging.getLogger("santeguard.reverify")


class ReverifyStore(Protocol):
    def verified_users(self) -> dict[str, Verification]: ...
    async def unbind(self, user_id: str) -> Verification | None: ...
    async def refresh(
        self,
        user_id: str,
        checked_at: datetime,
        valid_until: datetime,
        profession_code: str | None,
    ) -> None: ...


class Enforcer(Protocol):
    async def enforce_user(
        self, user_id: str, *, trigger: str, reason: str | None = None
    ) -> list[str]: ...


@dataclass
class ReverifyReport:
    checked: int = 0
    refreshed: int = 0
    deactivated: list[str] = field(default_factory=list)
    removed_from: dict[str, list[str]] = field(default_factory=dict)
    unreachable: bool = False


class Reverifier:
    def __init__(
        self,
        store: ReverifyStore,
        directory: DirectoryLookup,
        enforcer: Enforcer,
        audit: AuditPort,
        alert: Callable[[str], Awaitable[None]],
        *,
        verification_days: int,
        period_seconds: float,
        retry_seconds: float = 300,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._directory = directory
        self._enforcer = enforcer
        self._audit = audit
        self._alert = alert
        self._ttl = timedelta(days=verification_days)
        self._period = period_seconds
        self._retry = retry_seconds
        self._clock = clock
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    def trigger(self) -> None:
        """Run as soon as possible (a new extract was imported, an admin asked)."""
        self._wake.set()

    async def run_once(self) -> ReverifyReport:
        async with self._lock:
            return await self._run()

    async def _run(self) -> ReverifyReport:
        report = ReverifyReport()
        for user_id, current in sorted(self._store.verified_users().items()):
            try:
                practitioner = await self._directory.lookup(current.idnps)
            except ValueError:
                practitioner = None  # a stored identifier no directory can hold: not found
            except DirectoryUnavailable as e:
                report.unreachable = True
                await self._audit.record(
                    "reverify",
                    "reverify.directory_unreachable",
                    subject=user_id,
                    details={"error": str(e)[:200]},
                )
                await self._alert(
                    "Re-vérification interrompue : l'annuaire santé est injoignable ; personne "
                    "n'a été retiré. Nouvel essai bientôt. / Re-verification stopped: the health "
                    "directory is unreachable; nobody was removed. Retrying soon."
                )
                return report
            report.checked += 1
            if practitioner is None or not practitioner.active:
                await self._store.unbind(user_id)
                removed = await self._enforcer.enforce_user(
                    user_id, trigger="reverification", reason="no_longer_active"
                )
                report.deactivated.append(user_id)
                report.removed_from[user_id] = removed
                await self._audit.record(
                    "reverify",
                    "identity.deactivated",
                    subject=user_id,
                    details={
                        "idnps": current.idnps,
                        "rooms_removed": len(removed),
                        "found": practitioner is not None,
                    },
                )
                await self._alert(
                    f"{user_id} ({current.first_name} {current.last_name}) n'est plus actif dans "
                    f"l'annuaire : vérification retirée, retiré de {len(removed)} salon(s). / "
                    f"{user_id} is no longer active in the directory: unverified, removed from "
                    f"{len(removed)} room(s)."
                )
                continue
            now = self._clock()
            await self._store.refresh(user_id, now, now + self._ttl, practitioner.profession_code)
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

    async def run_forever(self) -> None:
        while True:
            try:
                report = await self.run_once()
                delay = self._retry if report.unreachable else self._period
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Re-verification failed; retrying later")
                delay = self._retry
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
