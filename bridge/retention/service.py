"""Every protected room carries an ``m.room.retention`` within the network's bounds.

The synchronous gate refuses an out-of-bounds policy before it reaches a room (Synapse
would accept it); this service covers the rest: the enforcement user gives a room that
has no policy the network default (when it joins, and in the periodic sweep), restores
the bounds if a policy slipped past the gate (a gate outage, a server admin), and tells
members the policy when they join and when it changes. Each change is audited.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.core.ports import AuditPort, RoomLanguagePort, RoutesPort, TextPort
from bridge.retention.policy import (
    RETENTION_EVENT,
    RetentionBounds,
    check_content,
    effective_max_ms,
    human_duration,
)

log = logging.getLogger("santeguard.retention")
#: Rooms whose last seen policy is remembered for welcome notices (cleared when full).
KNOWN_POLICIES_MAX = 100_000


class RoomStatePort(Protocol):
    """The enforcement user's side of the room (it has the power to set state)."""

    bot_mxid: str

    async def state(self, room_id: str, event_type: str) -> dict[str, Any] | None: ...
    async def set_state(self, room_id: str, event_type: str, content: dict[str, Any]) -> str: ...
    async def send_notice(self, room_id: str, text: str, html: str | None = None) -> str: ...
    async def joined_rooms(self) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class RoomRetention:
    """A room's policy as it stands: its content, whether it is within bounds, and the
    lifetime Synapse's purge job applies to it."""

    content: dict[str, Any] | None
    state: str  # ok | missing | out_of_bounds | malformed
    effective_ms: int


def room_retention(content: dict[str, Any] | None, bounds: RetentionBounds) -> RoomRetention:
    """Pure: judge a room's ``m.room.retention`` content against the bounds."""
    decision = check_content(content, bounds)
    if decision.allow:
        state = "ok"
    elif decision.reason == "retention_missing_max":
        state = "missing"
    elif decision.reason == "retention_out_of_bounds":
        state = "out_of_bounds"
    else:
        state = "malformed"
    return RoomRetention(content, state, effective_max_ms(content, bounds))


def repaired_content(current: RoomRetention, bounds: RetentionBounds) -> dict[str, Any]:
    """Pure: what the enforcement user sets on a room whose policy is not ``ok``: the
    nearest bound when the room declared a lifetime outside them, else the default."""
    if current.state == "out_of_bounds":
        return {"max_lifetime": current.effective_ms}
    return bounds.default_content()


class RetentionPolicies:
    def __init__(
        self,
        enforcer: RoomStatePort,
        bounds: RetentionBounds,
        audit: AuditPort,
        text: TextPort,
        *,
        is_protected: Callable[[str], bool],
        languages: RoomLanguagePort,
        default_language: str,
        own_users: frozenset[str],
    ) -> None:
        self._enforcer = enforcer
        self.bounds = bounds
        self._audit = audit
        self._t = text
        self._protected = is_protected
        self._languages = languages
        self._lang = default_language
        self._own = own_users
        # room -> the policy content as last seen in the room's own event stream (or
        # set or read by SantéGuard): a join's welcome notice needs no homeserver read.
        # Only the dispatcher (one per deployment: the leader) fills it, in room order.
        self._known: dict[str, dict[str, Any] | None] = {}

    def subscribe(self, routes: RoutesPort) -> None:
        routes.on("m.room.member", self.on_member)
        routes.on(RETENTION_EVENT, self.on_retention)
        routes.on("m.room.redaction", self.on_redaction)

    def _remember(self, room_id: str, content: dict[str, Any] | None) -> None:
        if len(self._known) >= KNOWN_POLICIES_MAX and room_id not in self._known:
            self._known.clear()
        self._known[room_id] = content

    async def on_redaction(self, event: dict[str, Any]) -> bool:
        """A redaction may strip the room's policy: read it afresh at the next join."""
        self._known.pop(str(event.get("room_id", "")), None)
        return False

    async def _last_known(self, room_id: str) -> RoomRetention:
        """The room's policy as last seen, read from the homeserver the first time."""
        if room_id in self._known:
            return room_retention(self._known[room_id], self.bounds)
        return await self.current(room_id)

    async def _language(self, room_id: str) -> str:
        return await self._languages.language(room_id) or self._lang

    def _duration(self, ms: int, lang: str) -> str:
        number, unit = human_duration(ms)
        return self._t.t(f"retention.unit.{unit}", lang, n=number)

    async def current(self, room_id: str) -> RoomRetention:
        """The room's policy, fresh from the homeserver."""
        content = await self._enforcer.state(room_id, RETENTION_EVENT)
        self._remember(room_id, content)
        return room_retention(content, self.bounds)

    async def ensure(self, room_id: str) -> bool:
        """Give a protected room a policy within bounds if it lacks one; True if set."""
        if not self._protected(room_id):
            return False
        current = await self.current(room_id)
        if current.state == "ok":
            return False
        await self.set(
            room_id,
            repaired_content(current, self.bounds),
            by=self._enforcer.bot_mxid,
            reason=current.state,
        )
        return True

    async def set(
        self, room_id: str, content: dict[str, Any], *, by: str, reason: str = "command"
    ) -> str:
        """Set the room's policy (through the enforcement user), audit it, tell members."""
        event_id = await self._enforcer.set_state(room_id, RETENTION_EVENT, content)
        self._remember(room_id, content)
        await self._audit.record(
            by,
            "retention.set",
            room_id=room_id,
            details={"max_lifetime_ms": content.get("max_lifetime"), "reason": reason},
        )
        await self._announce(room_id, int(content["max_lifetime"]), "retention.notice.changed")
        return event_id

    async def sweep(self) -> int:
        """Every protected room the enforcement user is in: set missing policies."""
        changed = 0
        for room_id in await self._enforcer.joined_rooms():
            try:
                changed += await self.ensure(room_id)
            except Exception as e:  # one room's failure must not stop the sweep
                log.warning("Could not check the retention of %s: %s", room_id, type(e).__name__)
        return changed

    async def _announce(self, room_id: str, ms: int, key: str, **params: object) -> None:
        lang = await self._language(room_id)
        text = self._t.t(key, lang, duration=self._duration(ms, lang), **params)
        try:
            await self._enforcer.send_notice(room_id, text)
        except Exception as e:  # the policy stands; telling members is best effort
            log.warning("Could not post the retention notice in %s: %s", room_id, type(e).__name__)

    async def on_member(self, event: dict[str, Any]) -> bool:
        content = event.get("content") or {}
        if content.get("membership") != "join":
            return False
        room_id, user = str(event.get("room_id", "")), str(event.get("state_key", ""))
        if not self._protected(room_id):
            return False
        if user == self._enforcer.bot_mxid:
            return await self.ensure(room_id)
        unsigned = event.get("unsigned") or {}
        previous = (unsigned.get("prev_content") or {}).get("membership")
        # A profile change is not a join; a join with no earlier membership is the
        # creator's, while the room is being created (its policy is in the initial state).
        if user in self._own or previous in (None, "join"):
            return False
        current = await self._last_known(room_id)
        await self._announce(room_id, current.effective_ms, "retention.notice.welcome", user=user)
        return True

    async def on_retention(self, event: dict[str, Any]) -> bool:
        """A policy change by someone else: restore the bounds if it slipped past the
        gate, else tell the members and audit it."""
        if event.get("state_key") != "":
            return False
        room_id = str(event.get("room_id", ""))
        content = event.get("content")
        self._remember(room_id, content if isinstance(content, dict) else None)
        if event.get("sender") in self._own or not self._protected(room_id):
            return False
        current = room_retention(content if isinstance(content, dict) else None, self.bounds)
        if current.state != "ok":
            await self.set(
                room_id,
                repaired_content(current, self.bounds),
                by=self._enforcer.bot_mxid,
                reason=f"restored:{current.state}",
            )
            return True
        await self._audit.record(
            str(event.get("sender")),
            "retention.changed",
            room_id=room_id,
            details={"max_lifetime_ms": current.effective_ms, "event_id": event.get("event_id")},
        )
        await self._announce(room_id, current.effective_ms, "retention.notice.changed")
        return True
