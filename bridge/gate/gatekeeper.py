"""The gatekeeper: synchronous gate decisions and the appservice backstop.

The gate answers Synapse's callbacks before an invite, join, room creation or message
takes effect. The backstop handles what still got through (an admin join, a gate
outage with a misconfigured fail-open, a verification that expired): it removes the
member or redacts the clear message, says so in the room, and audits it. Both use the
same pure policy (``bridge.gate.policy``) on the same facts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from bridge.core.errors import TransientError
from bridge.core.ports import AuditPort
from bridge.gate import policy
from bridge.gate.decision import GateDecision
from bridge.gate.store import GateStore
from bridge.identity.psc import PscVerifier

log = logging.getLogger("santeguard.gate")

Clock = Callable[[], datetime]


class GateMatrixPort(Protocol):
    bot_mxid: str

    async def encryption_state(self, room_id: str) -> dict[str, Any] | None: ...
    async def enable_encryption(self, room_id: str) -> None: ...
    async def kick(self, room_id: str, user_id: str, reason: str) -> None: ...
    async def redact(self, room_id: str, event_id: str, reason: str) -> None: ...
    async def send_notice(self, room_id: str, text: str, html: str | None = None) -> str: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Gatekeeper:
    def __init__(
        self,
        store: GateStore,
        network: policy.NetworkPolicy,
        matrix: GateMatrixPort,
        audit: AuditPort,
        *,
        language: str = "fr",
        encrypted_by_default: bool = False,
        clock: Clock = _utcnow,
        admin_room: str | None = None,
        psc: PscVerifier | None = None,
    ) -> None:
        self._admin_room = admin_room
        self._psc = psc
        self._store = store
        self._network = network
        self._matrix = matrix
        self._audit = audit
        self._lang = language
        self._encrypted_by_default = encrypted_by_default
        self._clock = clock

    @property
    def network(self) -> policy.NetworkPolicy:
        return self._network

    # -- facts ------------------------------------------------------------------------

    def member_decision(self, user_id: str, room_id: str) -> policy.Decision:
        return policy.may_be_member(
            user_id,
            self._store.verification(user_id),
            self._store.room(room_id),
            self._network,
            self._clock(),
        )

    def is_protected(self, room_id: str) -> bool:
        return policy.is_protected(self._store.room(room_id), self._network)

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
            and self._psc is not None
            and await self._psc.try_verify(subject) is not None
        ):
            subject, room_id, decision = self._decide(callback, payload)
        if decision is None:
            return GateDecision.allowed()
        if decision.allow:
            # Admissions are audited when the membership event arrives (on_member): only
            # an admission that took effect is a fact worth recording, and it keeps the
            # audit commit off the homeserver's path for the common case.
            return GateDecision.allowed()
        await self._audit.record(
            "gate",
            f"gate.refused.{callback}",
            room_id=room_id or None,
            subject=subject,
            details={"reason": decision.reason},
        )
        log.info("Gate refused %s for %s in %s: %s", callback, subject, room_id, decision.reason)
        return GateDecision.refused(policy.render_bilingual(decision, self._lang))

    async def _on_login(self, payload: dict[str, Any]) -> None:
        """A login through Pro Santé Connect verifies the account at once."""
        provider = str(payload.get("auth_provider_id") or "")
        if self._psc is not None and provider.startswith("oidc-"):
            await self._psc.try_verify(str(payload.get("user_id", "")), at_login=True)

    def _decide(
        self, callback: str, payload: dict[str, Any]
    ) -> tuple[str, str, policy.Decision | None]:
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
        if callback == "user_may_create_room":
            user = str(payload.get("user_id", ""))
            room_config = payload.get("room_config")
            decision = policy.may_create_room(
                user,
                self._store.verification(user),
                room_config if isinstance(room_config, dict) else None,
                self._network,
                self._clock(),
                encrypted_by_default=self._encrypted_by_default,
            )
            return user, "", decision
        if callback == "check_event_for_spam":
            event = payload.get("event") or {}
            room_id = str(event.get("room_id", ""))
            return (
                str(event.get("sender", "")),
                room_id,
                policy.message_allowed(event, self._store.room(room_id), self._network),
            )
        return "", "", None

    async def notify_admins(self, text: str) -> None:
        """Alerts go to the configured admin room, and always to the log."""
        log.warning("ALERT: %s", text)
        if self._admin_room:
            try:
                await self._matrix.send_notice(self._admin_room, text)
            except Exception:
                log.exception("Could not post the alert to the admin room")

    # -- backstop ---------------------------------------------------------------------

    async def on_create(self, event: dict[str, Any]) -> bool:
        """Rooms created by unverified network admins become unprotected admin rooms."""
        sender = str(event.get("sender", ""))
        if not policy.is_admin_room(event, self._network):
            return False
        if self._store.verification(sender) is not None:
            return False
        room_id = str(event["room_id"])
        current = self._store.room(room_id)
        if current.protected is False:
            return False
        await self._store.set_room(
            room_id, policy.RoomPolicy(protected=False, professions=current.professions), sender
        )
        await self._audit.record(
            self._matrix.bot_mxid, "room.admin_room", room_id=room_id, subject=sender
        )
        return True

    async def on_member(self, event: dict[str, Any]) -> bool:
        """Remove a member (or revoke an invite) that the policy does not allow."""
        content = event.get("content") or {}
        membership = content.get("membership")
        user_id = str(event.get("state_key", ""))
        room_id = str(event["room_id"])
        if isinstance(membership, str):
            await self._store.set_membership(room_id, user_id, membership)
        if membership not in ("join", "invite") or user_id == self._matrix.bot_mxid:
            return False
        decision = self.member_decision(user_id, room_id)
        if decision.allow:
            previous = (event.get("unsigned") or {}).get("prev_content") or {}
            if (
                previous.get("membership") != membership
                and self.is_protected(room_id)
                and not self._network.exempt(user_id)
            ):
                await self._audit.record(
                    "gate",
                    f"member.admitted.{membership}",
                    room_id=room_id,
                    subject=user_id,
                    details={"event_id": str(event.get("event_id"))},
                )
            return True
        await self.remove(room_id, user_id, decision, trigger=str(event.get("event_id")))
        return True

    async def enforce_user(
        self, user_id: str, *, trigger: str, reason: str | None = None
    ) -> list[str]:
        """Remove the user from every room the policy no longer lets them be in.

        ``reason`` replaces the generic "not verified" with why the binding went away.
        """
        removed = []
        for room_id in await self._store.rooms_of(user_id):
            decision = self.member_decision(user_id, room_id)
            if not decision.allow and reason and decision.reason == "not_verified":
                decision = policy.Decision.no(reason, user=user_id)
            if not decision.allow:
                await self.remove(room_id, user_id, decision, trigger=trigger)
                removed.append(room_id)
        return removed

    async def ensure_encrypted(self, room_id: str) -> bool:
        """Switch encryption on in a protected room found in clear (it cannot be undone).

        Where the bot lacks the power to do it, the room is reported to the admins.
        Returns True when the room is (now) encrypted.
        """
        if not self._network.require_encryption or not self.is_protected(room_id):
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
            await self.notify_admins(
                f"Le salon protégé {room_id} n'est pas chiffré et SantéGuard n'a pas le droit "
                f"de l'y activer. / Protected room {room_id} is not encrypted and SantéGuard "
                "lacks the power to switch encryption on."
            )
            return False
        await self._audit.record(self._matrix.bot_mxid, "encryption.enabled", room_id=room_id)
        log.info("Switched encryption on in protected room %s", room_id)
        return True

    async def enforce_room(self, room_id: str, *, trigger: str) -> list[str]:
        """Remove the room's members that its (new) policy no longer admits."""
        removed = []
        for user_id in await self._store.members_of(room_id):
            if user_id == self._matrix.bot_mxid:
                continue
            decision = self.member_decision(user_id, room_id)
            if not decision.allow:
                await self.remove(room_id, user_id, decision, trigger=trigger)
                removed.append(user_id)
        return removed

    async def remove(
        self, room_id: str, user_id: str, decision: policy.Decision, *, trigger: str
    ) -> None:
        reason = policy.render_bilingual(decision, self._lang)
        try:
            await self._matrix.kick(room_id, user_id, reason)
        except TransientError:
            raise
        except Exception as e:
            # No power to kick, or the user already left: never retry forever, tell people.
            log.warning("Could not remove %s from %s: %s", user_id, room_id, e)
            await self._audit.record(
                self._matrix.bot_mxid,
                "backstop.remove_failed",
                room_id=room_id,
                subject=user_id,
                details={"reason": decision.reason, "trigger": trigger},
            )
            await self.notify_admins(
                f"SantéGuard n'a pas pu retirer {user_id} de {room_id} ({decision.reason}). "
                f"/ SantéGuard could not remove {user_id} from {room_id}."
            )
            return
        await self._store.set_membership(room_id, user_id, "leave")
        await self._audit.record(
            self._matrix.bot_mxid,
            "backstop.removed",
            room_id=room_id,
            subject=user_id,
            details={"reason": decision.reason, "trigger": trigger},
        )
        await self._matrix.send_notice(room_id, policy.render(decision, self._lang))
        log.info("Removed %s from %s: %s", user_id, room_id, decision.reason)

    async def on_message(self, event: dict[str, Any]) -> bool:
        """Redact clear content that reached a protected room."""
        room_id = str(event["room_id"])
        decision = policy.message_allowed(event, self._store.room(room_id), self._network)
        if decision.allow:
            return False
        sender = str(event.get("sender", ""))
        await self._matrix.redact(
            room_id, str(event["event_id"]), policy.render_bilingual(decision)
        )
        await self._audit.record(
            self._matrix.bot_mxid,
            "backstop.redacted",
            room_id=room_id,
            subject=sender,
            details={"reason": decision.reason, "event_id": str(event["event_id"])},
        )
        await self._matrix.send_notice(room_id, f"{sender} : {policy.render(decision, self._lang)}")
        return True
