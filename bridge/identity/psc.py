"""Zero-touch verification through Pro Santé Connect (PSC).

When Synapse logs practitioners in through the PSC OpenID provider, it records the PSC
subject (the IDNPS) as the account's external id. SantéGuard reads it through the
Synapse admin API, checks it against the directory, and binds the account with source
``psc``: no admin has to type `!sg verify`. It runs at login (``check_login_for_spam``)
and, for accounts that logged in before SantéGuard was there, the first time the gate
meets them. A directory or homeserver that cannot answer binds nobody.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bridge.core.ports import AuditPort
from bridge.identity.model import DirectoryLookup, DirectoryUnavailable, Verification

log = logging.getLogger("santeguard.psc")

ExternalIdReader = Callable[[str], Awaitable[str | None]]


class BindingStore(Protocol):
    def verification(self, user_id: str) -> Verification | None: ...
    async def bind(self, user_id: str, verification: Verification, bound_by: str) -> None: ...


class PscVerifier:
    def __init__(
        self,
        read_idnps: ExternalIdReader,
        directory: DirectoryLookup,
        store: BindingStore,
        audit: AuditPort,
        *,
        verification_days: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        miss_ttl_seconds: float = 60.0,
    ) -> None:
        # Accounts without a usable PSC identity, so that refusing them again (the gate
        # is on the path of every invite and join) does not cost an admin API call each
        # time. Per instance; an account that logs in through PSC is retried at login.
        self._misses: dict[str, float] = {}
        self._miss_ttl = miss_ttl_seconds
        self._read = read_idnps
        self._directory = directory
        self._store = store
        self._audit = audit
        self._ttl = timedelta(days=verification_days)
        self._clock = clock

    async def try_verify(self, user_id: str, *, at_login: bool = False) -> Verification | None:
        """Bind ``user_id`` from its PSC identity if it has one and the directory agrees."""
        if self._store.verification(user_id) is not None:
            return self._store.verification(user_id)
        now = time.monotonic()
        if not at_login and self._misses.get(user_id, 0.0) > now:
            return None
        result = await self._try(user_id)
        if result is None:
            if len(self._misses) > 10_000:
                self._misses = {u: t for u, t in self._misses.items() if t > now}
            self._misses[user_id] = now + self._miss_ttl
        else:
            self._misses.pop(user_id, None)
        return result

    async def _try(self, user_id: str) -> Verification | None:
        try:
            idnps = await self._read(user_id)
            if idnps is None:
                return None
            practitioner = await self._directory.lookup(idnps)
        except (DirectoryUnavailable, ValueError) as e:
            log.warning("PSC verification of %s not possible now: %s", user_id, e)
            return None
        if practitioner is None or not practitioner.active:
            await self._audit.record(
                "psc",
                "identity.psc_refused",
                subject=user_id,
                details={"idnps": idnps, "found": practitioner is not None},
            )
            return None
        verification = Verification.of(practitioner, "psc", self._clock(), self._ttl)
        await self._store.bind(user_id, verification, bound_by="psc")
        await self._audit.record(
            "psc",
            "identity.bound",
            subject=user_id,
            details={"idnps": practitioner.idnps, "source": "psc", "directory_check": True},
        )
        log.info("Verified %s through Pro Santé Connect", user_id)
        return verification
