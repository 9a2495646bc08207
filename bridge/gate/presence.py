"""The enforcement user's presence: it joins every room it is invited to (the room module
invites it into every room at creation, with the power to enforce) and the admins are
told when it is removed from one, since the gate can then no longer act there."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from bridge.core.ports import AlertPort, AuditPort, RoutesPort

log = logging.getLogger("santeguard.gate")


class JoinPort(Protocol):
    bot_mxid: str

    async def join(self, room_id: str) -> None: ...


class EnforcerPresence:
    def __init__(self, matrix: JoinPort, audit: AuditPort, alerts: AlertPort) -> None:
        self._matrix = matrix
        self._audit = audit
        self._alerts = alerts

    def subscribe(self, routes: RoutesPort) -> None:
        routes.on("m.room.member", self.on_member)

    async def on_member(self, event: dict[str, Any]) -> bool:
        if event.get("state_key") != self._matrix.bot_mxid:
            return False
        membership = (event.get("content") or {}).get("membership")
        room_id = str(event["room_id"])
        if membership == "invite":
            await self._matrix.join(room_id)
            await self._audit.record(self._matrix.bot_mxid, "enforcer.joined", room_id=room_id)
        elif membership in ("leave", "ban") and event.get("sender") != self._matrix.bot_mxid:
            await self._audit.record(
                self._matrix.bot_mxid,
                f"enforcer.{membership}",
                room_id=room_id,
                subject=event.get("sender"),
            )
            await self._alerts.alert(
                "alert.enforcer_removed", room=room_id, by=str(event.get("sender"))
            )
        return True
