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
from typing import Protocol

from bridge.identity.bind import Binder
from bridge.identity.model import DirectoryUnavailable, Verification

log = logging.getLogger("santeguard.psc")

ExternalIdReader = Callable[[str], Awaitable[str | None]]


class BindingReader(Protocol):
    def verification(self, user_id: str) -> Verification | None: ...


class PscVerifier:
    def __init__(
        self,
        read_idnps: ExternalIdReader,
        binder: Binder,
        store: BindingReader,
        *,
        miss_ttl_seconds: float = 60.0,
    ) -> None:
        # Accounts without a usable PSC identity, so that refusing them again (the gate
        # is on the path of every invite and join) does not cost an admin API call each
        # time. Per instance; an account that logs in through PSC is retried at login.
        self._misses: dict[str, float] = {}
        self._miss_ttl = miss_ttl_seconds
        self._read = read_idnps
        self._binder = binder
        self._store = store

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
            outcome = await self._binder.verify(user_id, idnps, source="psc", actor="psc")
        except (DirectoryUnavailable, ValueError) as e:
            log.warning("PSC verification of %s not possible now: %s", user_id, e)
            return None
        if outcome.ok:
            log.info("Verified %s through Pro Santé Connect", user_id)
        return outcome.verification
