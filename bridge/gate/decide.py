"""The synchronous gate: Synapse's callbacks answered before an action takes effect.

Synapse (synapse-http-antispam, and SantéGuard's room module for creations) calls these
over HTTP before an invite, join, room creation or message, and refuses the action on
any non-2xx answer. Decisions come from the pure policy (``gate/policy.py``) on facts
held in memory; a refusal is audited before it is answered.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from bot.i18n import Translator
from bridge.core.antispam import GateDecision
from bridge.core.decision import Decision
from bridge.core.ports import AuditPort, Clock, CredentialPort, ZeroTouchPort
from bridge.gate import policy
from bridge.gate.store import RoomPolicyStore

log = logging.getLogger("santeguard.gate")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def reason_text(translator: Translator, decision: Decision, lang: str) -> str:
    """A refusal in one language."""
    return translator.t(f"gate.reason.{decision.reason}", lang, **decision.params)


def reason_bilingual(translator: Translator, decision: Decision, first: str = "fr") -> str:
    """A refusal in both languages, for texts the homeserver shows as they are."""
    return translator.bilingual(f"gate.reason.{decision.reason}", first, **decision.params)


class Gatekeeper:
    """Answers the callbacks, and tells other capabilities what the gate would decide."""

    def __init__(
        self,
        rooms: RoomPolicyStore,
        credentials: CredentialPort,
        network: policy.NetworkPolicy,
        audit: AuditPort,
        translator: Translator,
        *,
        language: str = "fr",
        encrypted_by_default: bool = False,
        clock: Clock = _utcnow,
        zero_touch: ZeroTouchPort | None = None,
    ) -> None:
        self._rooms = rooms
        self._credentials = credentials
        self._network = network
        self._audit = audit
        self._t = translator
        self._lang = language
        self._encrypted_by_default = encrypted_by_default
        self._clock = clock
        self._zero_touch = zero_touch

    @property
    def network(self) -> policy.NetworkPolicy:
        return self._network

    # -- facts (RoomRulesPort) --------------------------------------------------------

    def member_decision(self, user_id: str, room_id: str) -> Decision:
        return policy.may_be_member(
            user_id,
            self._credentials.verification(user_id),
            self._rooms.room(room_id),
            self._network,
            self._clock(),
        )

    def is_protected(self, room_id: str) -> bool:
        return policy.is_protected(self._rooms.room(room_id), self._network)

    def message_decision(self, event: dict[str, Any]) -> Decision:
        room = self._rooms.room(str(event.get("room_id", "")))
        return policy.message_allowed(event, room, self._network)

    async def admits(self, user_id: str, room_id: str) -> bool:
        """Whether the gate would admit the member now (the bot's device shares room keys
        only with them: a member who got past the gate reads nothing new)."""
        return self.member_decision(user_id, room_id).allow

    def is_admin_room(self, room_id: str) -> bool:
        return self._rooms.room(room_id).admin_room

    def is_verified(self, user_id: str) -> bool:
        return self._credentials.verification(user_id) is not None

    # -- synchronous gate -------------------------------------------------------------

    async def decide(self, callback: str, payload: dict[str, Any]) -> GateDecision:
        if callback == "check_login_for_spam":
            await self._on_login(payload)
            return GateDecision.allowed()
        subject, room_id, decision = self._decide(callback, payload)
        if (
            decision is not None
            and not decision.allow
            and decision.reason in ("not_verified", "creator_not_verified")
            and self._zero_touch is not None
            and await self._zero_touch.try_verify(subject) is not None
        ):
            subject, room_id, decision = self._decide(callback, payload)
        if decision is None or decision.allow:
            # Admissions are audited when the membership event arrives (the backstop):
            # only an admission that took effect is a fact worth recording, and it keeps
            # the audit commit off the homeserver's path for the common case.
            return GateDecision.allowed()
        await self._audit.record(
            "gate",
            f"gate.refused.{callback}",
            room_id=room_id or None,
            subject=subject,
            details={"reason": decision.reason},
            # Committed before the answer; its fsync need not be: the homeserver refuses
            # whatever becomes of the entry (bridge.db.sqlite_writer, "synced later").
            synced=False,
        )
        log.info("Gate refused %s for %s in %s: %s", callback, subject, room_id, decision.reason)
        return GateDecision.refused(reason_bilingual(self._t, decision, self._lang))

    async def _on_login(self, payload: dict[str, Any]) -> None:
        """A login through Pro Santé Connect verifies the account at once."""
        provider = str(payload.get("auth_provider_id") or "")
        if self._zero_touch is not None and provider.startswith("oidc-"):
            await self._zero_touch.try_verify(str(payload.get("user_id", "")), at_login=True)

    def _decide(self, callback: str, payload: dict[str, Any]) -> tuple[str, str, Decision | None]:
        if callback == "user_may_invite":
            invitee, room_id = str(payload.get("invitee", "")), str(payload.get("room_id", ""))
            return invitee, room_id, self.member_decision(invitee, room_id)
        if callback == "user_may_join_room":
            user, room_id = str(payload.get("user", "")), str(payload.get("room", ""))
            return user, room_id, self.member_decision(user, room_id)
        if callback == "federated_user_may_invite":
            event = payload.get("event") or {}
            invitee, room_id = str(event.get("state_key", "")), str(event.get("room_id", ""))
            return invitee, room_id, self.member_decision(invitee, room_id)
        if callback == "user_may_send_3pid_invite":
            # An e-mail address or phone number is not an account the gate can verify.
            inviter, room_id = str(payload.get("inviter", "")), str(payload.get("room_id", ""))
            return inviter, room_id, Decision.no("third_party_invite")
        if callback == "user_may_create_room":
            user = str(payload.get("user_id", ""))
            room_config = payload.get("room_config")
            decision = policy.may_create_room(
                user,
                self._credentials.verification(user),
                room_config if isinstance(room_config, dict) else None,
                self._network,
                self._clock(),
                encrypted_by_default=self._encrypted_by_default,
            )
            return user, "", decision
        if callback == "check_event_for_spam":
            event = payload.get("event") or {}
            room_id, sender = str(event.get("room_id", "")), str(event.get("sender", ""))
            decision = policy.may_send(
                event,
                self._credentials.verification(sender),
                self._rooms.room(room_id),
                self._network,
                self._clock(),
            )
            return sender, room_id, decision
        return "", "", None
