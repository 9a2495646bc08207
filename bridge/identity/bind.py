"""The one binding path: directory lookup → checks → bind (or refresh) → audit.

`!sg verify`, Pro Santé Connect and the scheduled re-verification all bind accounts to
practitioners through :meth:`Binder.verify`, so the checks and the audit trail are the
same whoever asks. A directory that cannot answer raises
:class:`~bridge.identity.model.DirectoryUnavailable` and binds nobody.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from bridge.core.ports import AuditPort
from bridge.identity.matching import name_matches
from bridge.identity.model import DirectoryLookup, Practitioner, Verification, VerificationSource
from bridge.identity.store import VerificationStore

Status = Literal["bound", "refreshed", "not_found", "inactive", "name_mismatch", "gone"]
"""``gone``: a refresh found no binding left to refresh (it was removed meanwhile)."""


@dataclass(frozen=True, slots=True)
class BindOutcome:
    status: Status
    practitioner: Practitioner | None = None
    verification: Verification | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("bound", "refreshed")


class Binder:
    def __init__(
        self,
        store: VerificationStore,
        directory: DirectoryLookup,
        audit: AuditPort,
        *,
        verification_days: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._directory = directory
        self._audit = audit
        self._ttl = timedelta(days=verification_days)
        self._clock = clock

    @property
    def directory(self) -> DirectoryLookup:
        return self._directory

    async def verify(
        self,
        user_id: str,
        idnps: str,
        *,
        source: VerificationSource,
        actor: str,
        room_id: str | None = None,
        display_name: str | None = None,
        name_confirmed: bool = False,
        refresh: bool = False,
    ) -> BindOutcome:
        """Bind ``user_id`` to the active practitioner ``idnps``, or say why not.

        ``display_name`` (with ``name_confirmed`` False) requires the account's display
        name to match the practitioner's. ``refresh`` re-checks an existing binding: it
        keeps who bound it and what name it was bound under, extends its validity, and
        leaves refusals to the caller (which unbinds and removes).
        """
        practitioner = await self._directory.lookup(idnps)
        if practitioner is None or not practitioner.active:
            status: Status = "not_found" if practitioner is None else "inactive"
            if not refresh:
                await self._audit.record(
                    actor,
                    f"identity.{source}_refused",
                    room_id=room_id,
                    subject=user_id,
                    details={"idnps": idnps, "found": practitioner is not None},
                )
            return BindOutcome(status, practitioner)
        if display_name is not None and not name_confirmed:
            if not name_matches(display_name, practitioner):
                return BindOutcome("name_mismatch", practitioner)
        now = self._clock()
        if refresh:
            if self._store.verification(user_id) is None:
                return BindOutcome("gone", practitioner)
            await self._store.refresh(user_id, now, now + self._ttl, practitioner.profession_code)
            return BindOutcome("refreshed", practitioner, self._store.verification(user_id))
        verification = Verification.of(practitioner, source, now, self._ttl)
        await self._store.bind(user_id, verification, bound_by=actor)
        details: dict[str, object] = {
            "idnps": practitioner.idnps,
            "source": source,
            "directory_check": True,
        }
        if display_name is not None:
            details["name_confirmed"] = name_confirmed
        await self._audit.record(
            actor, "identity.bound", room_id=room_id, subject=user_id, details=details
        )
        return BindOutcome("bound", practitioner, verification)
