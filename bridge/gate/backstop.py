"""The backstop: what got past the synchronous gate is undone after the event.

An admin join, a gate outage with a misconfigured fail-open, a verification that
expired or was withdrawn: the member's removal is planned durably (``gate/enforce.py``
carries it out until the homeserver confirms), so the dispatcher never waits on a kick
and a failing kick never blocks the room's other events. Rooms created by network
admins who are not practitioners become closed admin rooms.
"""

from __future__ import annotations

from typing import Any

from bridge.core.ports import AuditPort, RoutesPort
from bridge.gate import policy
from bridge.gate.decide import Gatekeeper
from bridge.gate.enforce import Enforcer
from bridge.gate.store import RoomPolicyStore


class Backstop:
    def __init__(
        self,
        gatekeeper: Gatekeeper,
        rooms: RoomPolicyStore,
        enforcer: Enforcer,
        audit: AuditPort,
        *,
        own_users: frozenset[str],
    ) -> None:
        self._gk = gatekeeper
        self._rooms = rooms
        self._enforcer = enforcer
        self._audit = audit
        self._own = own_users

    def subscribe(self, routes: RoutesPort) -> None:
        routes.on("m.room.create", self.on_create)
        routes.on("m.room.member", self.on_member)

    async def on_create(self, event: dict[str, Any]) -> bool:
        """A room created by an unverified network admin becomes a closed admin room."""
        sender = str(event.get("sender", ""))
        if not policy.is_admin_room(event, self._gk.network) or self._gk.is_verified(sender):
            return False
        room_id = str(event["room_id"])
        current = self._rooms.room(room_id)
        if current.admin_room:
            return False
        new = policy.RoomPolicy(protected=False, professions=current.professions, admin_room=True)

        async def plan(conn: Any) -> None:
            await self._enforcer.plan_room(conn, room_id, new, trigger="admin room")

        await self._rooms.set_room(room_id, new, sender, then=plan)
        self._enforcer.wake()
        await self._audit.record("gate", "room.admin_room", room_id=room_id, subject=sender)
        return True

    async def on_member(self, event: dict[str, Any]) -> bool:
        """Record the membership; plan the removal of a member the gate does not admit."""
        user_id = str(event.get("state_key", ""))
        if user_id in self._own:
            return False  # SantéGuard's own users: their presence is handled elsewhere
        content = event.get("content") or {}
        membership = content.get("membership")
        room_id = str(event["room_id"])
        if isinstance(membership, str):
            await self._rooms.set_membership(room_id, user_id, membership)
        if membership not in ("join", "invite", "knock"):
            return False
        decision = self._gk.member_decision(user_id, room_id)
        if not decision.allow:
            await self._enforcer.plan_members(
                [(room_id, user_id)], trigger=str(event.get("event_id"))
            )
            return True
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
