"""The backstop: what got past the synchronous gate is undone after the event.

An admin join, a gate outage with a misconfigured fail-open, a verification that
expired or was withdrawn: the member is removed (or the invite revoked), the room is
told why, and it is audited. Decisions are the gatekeeper's, on the same facts.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from bot.i18n import Translator
from bridge.core.decision import Decision
from bridge.core.errors import TransientError
from bridge.core.ports import AlertPort, AuditPort, RoutesPort
from bridge.gate import policy
from bridge.gate.decide import Gatekeeper, reason_bilingual, reason_text
from bridge.gate.store import RoomPolicyStore

log = logging.getLogger("santeguard.gate")


class KickPort(Protocol):
    bot_mxid: str

    async def kick(self, room_id: str, user_id: str, reason: str) -> None: ...
    async def send_notice(self, room_id: str, text: str, html: str | None = None) -> str: ...


class Backstop:
    def __init__(
        self,
        gatekeeper: Gatekeeper,
        rooms: RoomPolicyStore,
        matrix: KickPort,
        audit: AuditPort,
        alerts: AlertPort,
        translator: Translator,
        *,
        language: str = "fr",
    ) -> None:
        self._gk = gatekeeper
        self._rooms = rooms
        self._matrix = matrix
        self._audit = audit
        self._alerts = alerts
        self._t = translator
        self._lang = language

    def subscribe(self, routes: RoutesPort) -> None:
        routes.on("m.room.create", self.on_create)
        routes.on("m.room.member", self.on_member)

    async def on_create(self, event: dict[str, Any]) -> bool:
        """Rooms created by unverified network admins become unprotected admin rooms."""
        sender = str(event.get("sender", ""))
        if not policy.is_admin_room(event, self._gk.network) or self._gk.is_verified(sender):
            return False
        room_id = str(event["room_id"])
        current = self._rooms.room(room_id)
        if current.protected is False:
            return False
        await self._rooms.set_room(
            room_id, policy.RoomPolicy(protected=False, professions=current.professions), sender
        )
        await self._audit.record(
            self._matrix.bot_mxid, "room.admin_room", room_id=room_id, subject=sender
        )
        return True

    async def on_member(self, event: dict[str, Any]) -> bool:
        """Remove a member (or revoke an invite) that the policy does not allow."""
        user_id = str(event.get("state_key", ""))
        if user_id == self._matrix.bot_mxid:
            return False  # the bot's own membership is the commands capability's concern
        content = event.get("content") or {}
        membership = content.get("membership")
        room_id = str(event["room_id"])
        if isinstance(membership, str):
            await self._rooms.set_membership(room_id, user_id, membership)
        if membership not in ("join", "invite"):
            return False
        decision = self._gk.member_decision(user_id, room_id)
        if decision.allow:
            previous = (event.get("unsigned") or {}).get("prev_content") or {}
            if (
                previous.get("membership") != membership
                and self._gk.is_protected(room_id)
                and not self._gk.network.exempt(user_id)
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
        for room_id in await self._rooms.rooms_of(user_id):
            decision = self._gk.member_decision(user_id, room_id)
            if not decision.allow and reason and decision.reason == "not_verified":
                decision = Decision.no(reason, user=user_id)
            if not decision.allow:
                await self.remove(room_id, user_id, decision, trigger=trigger)
                removed.append(room_id)
        return removed

    async def enforce_room(self, room_id: str, *, trigger: str) -> list[str]:
        """Remove the room's members that its (new) policy no longer admits."""
        removed = []
        for user_id in await self._rooms.members_of(room_id):
            if user_id == self._matrix.bot_mxid:
                continue
            decision = self._gk.member_decision(user_id, room_id)
            if not decision.allow:
                await self.remove(room_id, user_id, decision, trigger=trigger)
                removed.append(user_id)
        return removed

    async def remove(self, room_id: str, user_id: str, decision: Decision, *, trigger: str) -> None:
        try:
            await self._matrix.kick(
                room_id, user_id, reason_bilingual(self._t, decision, self._lang)
            )
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
            await self._alerts.alert(
                "alert.remove_failed", user=user_id, room=room_id, reason=decision.reason
            )
            return
        await self._rooms.set_membership(room_id, user_id, "leave")
        await self._audit.record(
            self._matrix.bot_mxid,
            "backstop.removed",
            room_id=room_id,
            subject=user_id,
            details={"reason": decision.reason, "trigger": trigger},
        )
        await self._matrix.send_notice(room_id, reason_text(self._t, decision, self._lang))
        log.info("Removed %s from %s: %s", user_id, room_id, decision.reason)
