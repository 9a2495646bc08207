"""The reconcile sweep: every violation re-derived from the homeserver's current members.

Events can be missed (SantéGuard down while the homeserver gave up a transaction, a
membership changed by a server admin, a bug): the sweep does not depend on them. At
start and periodically it reads, for every room the enforcement user is in, who is
joined or invited now, records it, and plans the removal of everyone the gate does
not admit. The durable enforcement worker does the rest.
"""

from __future__ import annotations

import logging
from typing import Protocol

from bridge.gate.decide import Gatekeeper
from bridge.gate.enforce import Enforcer
from bridge.gate.store import RoomPolicyStore

log = logging.getLogger("santeguard.reconcile")


class MembersPort(Protocol):
    async def joined_rooms(self) -> list[str]: ...
    async def members(self, room_id: str) -> list[tuple[str, str]]: ...


class Reconciler:
    def __init__(
        self,
        matrix: MembersPort,
        rooms: RoomPolicyStore,
        gatekeeper: Gatekeeper,
        enforcer: Enforcer,
    ) -> None:
        self._matrix = matrix
        self._rooms = rooms
        self._gk = gatekeeper
        self._enforcer = enforcer

    async def sweep(self) -> int:
        """One pass over every room; returns how many removals it planned."""
        planned = 0
        for room_id in await self._matrix.joined_rooms():
            members = await self._matrix.members(room_id)
            await self._rooms.replace_members(room_id, members)
            bad = [
                (room_id, user)
                for user, membership in members
                if membership in ("join", "invite", "knock")
                and not self._gk.member_decision(user, room_id).allow
            ]
            await self._enforcer.plan_members(bad, trigger="reconcile")
            planned += len(bad)
        if planned:
            log.info("Reconcile sweep planned %d removal(s)", planned)
        return planned
