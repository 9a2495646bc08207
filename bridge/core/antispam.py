"""The synchronous gate's contract with the HTTP layer: callbacks, decisions, the port.

Synapse calls these (synapse-http-antispam and SantéGuard's room module) *before* an
invite, join, room creation or message takes effect, and refuses the action on any
non-2xx answer (the module is configured fail-closed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

GATE_CALLBACKS = frozenset(
    {
        "user_may_invite",
        "user_may_join_room",
        "user_may_create_room",
        "check_event_for_spam",
        "user_may_send_3pid_invite",
        "user_may_create_room_alias",
        "user_may_publish_room",
        "federated_user_may_invite",
        "check_login_for_spam",
        "check_username_for_spam",
    }
)


@dataclass(frozen=True, slots=True)
class GateDecision:
    allow: bool
    errcode: str = "M_FORBIDDEN"
    reason: str = ""

    @classmethod
    def allowed(cls) -> GateDecision:
        return cls(True)

    @classmethod
    def refused(cls, reason: str, errcode: str = "M_FORBIDDEN") -> GateDecision:
        return cls(False, errcode, reason)


class GatePort(Protocol):
    async def decide(self, callback: str, payload: dict[str, Any]) -> GateDecision: ...
