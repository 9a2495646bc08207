"""Forced end-to-end encryption in protected rooms, after the fact.

The synchronous gate refuses rooms born in clear and clear messages; this is what acts
when something still got through: a protected room found unencrypted gets encryption
switched on (it cannot be undone), and clear content that reached a protected room is
redacted, with a notice and an audit entry. What is protected is the gate's call,
asked through :class:`~bridge.core.ports.RoomRulesPort`.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Protocol

from bot.i18n import Translator
from bridge.core.errors import TransientError
from bridge.core.ports import AlertPort, AuditPort, RoomRulesPort, RoutesPort

log = logging.getLogger("santeguard.e2ee")


class EncryptionMatrixPort(Protocol):
    bot_mxid: str

    async def encryption_state(self, room_id: str) -> dict[str, Any] | None: ...
    async def enable_encryption(self, room_id: str) -> None: ...
    async def redact(
        self, room_id: str, event_id: str, reason: str, *, txn_id: str | None = None
    ) -> None: ...
    async def send_notice(
        self, room_id: str, text: str, html: str | None = None, *, txn_id: str | None = None
    ) -> str: ...


class ForcedEncryption:
    def __init__(
        self,
        rules: RoomRulesPort,
        matrix: EncryptionMatrixPort,
        audit: AuditPort,
        alerts: AlertPort,
        translator: Translator,
        *,
        require_encryption: bool = True,
        language: str = "fr",
    ) -> None:
        self._rules = rules
        self._matrix = matrix
        self._audit = audit
        self._alerts = alerts
        self._t = translator
        self._required = require_encryption
        self._lang = language

    def subscribe(self, routes: RoutesPort) -> None:
        # A guard: refused content is redacted and never reaches the other handlers
        # (a clear "!sg …" in a protected room is not run as a command).
        # Any type: clear text may also ride in a state event of any type.
        routes.guard("*", self.redact_clear, ignore_own=True)

    async def ensure_encrypted(self, room_id: str) -> bool:
        """Switch encryption on in a protected room found in clear.

        Where the bot lacks the power to do it, the room is reported to the admins.
        Returns True when the room is (now) encrypted.
        """
        if not self._required or not self._rules.is_protected(room_id):
            return False
        if await self._matrix.encryption_state(room_id) is not None:
            return True
        try:
            await self._matrix.enable_encryption(room_id)
        except TransientError:
            raise
        except Exception as e:
            log.warning("Could not enable encryption in %s: %s", room_id, e)
            await self._audit.record(
                self._matrix.bot_mxid, "encryption.enable_failed", room_id=room_id
            )
            await self._alerts.alert("alert.encryption_enable_failed", room=room_id)
            return False
        await self._audit.record(self._matrix.bot_mxid, "encryption.enabled", room_id=room_id)
        log.info("Switched encryption on in protected room %s", room_id)
        return True

    async def redact_clear(self, event: dict[str, Any]) -> bool:
        """Redact clear content that reached a protected room; True if it did."""
        decision = self._rules.message_decision(event)
        if decision.allow:
            return False
        room_id, event_id = str(event["room_id"]), str(event["event_id"])
        sender = str(event.get("sender", ""))
        key = f"gate.reason.{decision.reason}"
        # Transaction IDs derived from the event: handled again after a crash (dispatch is
        # at least once), the homeserver returns the first redaction and notice.
        txn = f"sg-redact-{hashlib.sha256(event_id.encode()).hexdigest()[:24]}"
        await self._matrix.redact(
            room_id, event_id, self._t.bilingual(key, "fr", **decision.params), txn_id=txn
        )
        await self._audit.record(
            self._matrix.bot_mxid,
            "backstop.redacted",
            room_id=room_id,
            subject=sender,
            details={"reason": decision.reason, "event_id": event_id},
        )
        text = self._t.t(key, self._lang, **decision.params)
        await self._matrix.send_notice(room_id, f"{sender} : {text}", txn_id=f"{txn}-notice")
        return True
