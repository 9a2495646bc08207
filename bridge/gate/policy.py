"""Pure gate decisions: who may be in a protected room, which rooms and messages pass.

Everything here is a function of facts (the member's verification, the room's policy,
the network's policy, the clock): no I/O, so the synchronous gate (called by Synapse
before the action) and the appservice backstop (after the event) decide identically.
Refusal reasons are text-catalog keys (``gate.reason.<reason>`` in ``gate/text.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from bridge.core.decision import Decision
from bridge.core.ports import Credential
from bridge.core.professions import profession_label

__all__ = [
    "CONTENT_TYPES",
    "MEGOLM",
    "Decision",
    "NetworkPolicy",
    "RoomPolicy",
    "is_admin_room",
    "is_protected",
    "may_be_member",
    "may_create_room",
    "may_send",
    "message_allowed",
]

MEGOLM = "m.megolm.v1.aes-sha2"

# Event types whose content is what practitioners say or share: refused in clear.
CONTENT_TYPES = frozenset(
    {
        "m.room.message",
        "m.sticker",
        "m.reaction",
        "m.poll.start",
        "org.matrix.msc3381.poll.start",
        "m.call.invite",
    }
)


# Fields that carry what people write.
TEXT_FIELDS = ("body", "formatted_body")

# Room-state types a client legitimately sets; any other state type carrying text is
# refused in a protected room (clear text must not hide in state).
KNOWN_STATE_TYPES = frozenset(
    {
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.join_rules",
        "m.room.history_visibility",
        "m.room.guest_access",
        "m.room.name",
        "m.room.topic",
        "m.room.avatar",
        "m.room.canonical_alias",
        "m.room.aliases",
        "m.room.encryption",
        "m.room.server_acl",
        "m.room.tombstone",
        "m.room.pinned_events",
        "m.room.third_party_invite",
        "m.room.retention",
        "m.space.child",
        "m.space.parent",
        "m.call.member",
        "org.matrix.msc3401.call.member",
        "im.vector.modular.widgets",
        "m.widget",
    }
)


StateRule = Callable[[Mapping[str, Any] | None], Decision]
"""Pure check of one room-state event's content (state key ``""``)."""


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """The health network's rules, from configuration."""

    home_server: str
    allowed_servers: frozenset[str]
    exempt_users: frozenset[str]
    exempt_user_pattern: re.Pattern[str] | None
    protect_by_default: bool = True
    require_encryption: bool = True
    unencrypted_room_types: frozenset[str] = frozenset()
    admins: frozenset[str] = frozenset()
    # Room-state rules other capabilities declare (e.g. retention bounds for
    # ``m.room.retention``): a pure check of the state content, applied in protected
    # rooms to state events and to a new room's initial state.
    state_rules: Mapping[str, StateRule] = field(default_factory=lambda: MappingProxyType({}))

    def server_allowed(self, user_id: str) -> bool:
        server = user_id.split(":", 1)[1] if ":" in user_id else ""
        return server == self.home_server or server in self.allowed_servers

    def exempt(self, user_id: str) -> bool:
        if user_id in self.exempt_users:
            return True
        return bool(self.exempt_user_pattern and self.exempt_user_pattern.fullmatch(user_id))


@dataclass(frozen=True, slots=True)
class RoomPolicy:
    """Per-room settings (``!sg room …``); None means 'network default'.

    ``admin_room``: a room where network admins talk to the bot; closed to everybody
    else (no patient data belongs there, so it is not a practitioners' room either).
    """

    protected: bool | None = None
    professions: frozenset[str] = field(default_factory=frozenset)
    admin_room: bool = False


def is_protected(room: RoomPolicy, network: NetworkPolicy) -> bool:
    """A practitioners' room: verified members only, end-to-end encrypted."""
    if room.admin_room:
        return False
    return network.protect_by_default if room.protected is None else room.protected


def may_be_member(
    user_id: str,
    verification: Credential | None,
    room: RoomPolicy,
    network: NetworkPolicy,
    now: datetime,
) -> Decision:
    """May ``user_id`` be invited to, join or stay in this room?"""
    if network.exempt(user_id):
        return Decision.ok()
    if room.admin_room:
        if user_id in network.admins:
            return Decision.ok()
        return Decision.no("admin_room_closed", user=user_id)
    if not is_protected(room, network):
        return Decision.ok()
    if not network.server_allowed(user_id):
        return Decision.no("server_not_allowed", user=user_id, server=user_id.split(":", 1)[-1])
    if verification is None:
        return Decision.no("not_verified", user=user_id)
    if not verification.is_valid_at(now):
        return Decision.no(
            "verification_expired", user=user_id, date=verification.valid_until.date().isoformat()
        )
    if room.professions and verification.profession_code not in room.professions:
        allowed = ", ".join(sorted(profession_label(c) or c for c in room.professions))
        prof = profession_label(verification.profession_code) or "?"
        return Decision.no("profession_not_allowed", user=user_id, allowed=allowed, profession=prof)
    return Decision.ok()


def _has_megolm(initial_state: Any) -> bool:
    if not isinstance(initial_state, list):
        return False
    for ev in initial_state:
        if (
            isinstance(ev, dict)
            and ev.get("type") == "m.room.encryption"
            and ev.get("state_key", "") == ""
            and isinstance(ev.get("content"), dict)
            and ev["content"].get("algorithm") == MEGOLM
        ):
            return True
    return False


def may_create_room(
    user_id: str,
    verification: Credential | None,
    room_config: Mapping[str, Any] | None,
    network: NetworkPolicy,
    now: datetime,
    *,
    encrypted_by_default: bool = False,
) -> Decision:
    """May this user create a room with this ``/createRoom`` body?

    ``room_config`` is None when the homeserver did not pass it (old module); then only
    the creator is checked. ``encrypted_by_default`` is the homeserver's
    ``encryption_enabled_by_default_for_room_type: all``, which adds the encryption event
    itself.
    """
    if network.exempt(user_id) or not network.protect_by_default:
        return Decision.ok()  # a new room is protected only when rooms are by default
    if user_id in network.admins and verification is None:
        return Decision.ok()  # an admin room: unprotected once created (see admin_room)
    who = may_be_member(user_id, verification, RoomPolicy(), network, now)
    if not who.allow:
        return Decision.no("creator_not_verified")
    initial_state = room_config.get("initial_state") if room_config is not None else None
    if isinstance(initial_state, list):  # anything else holds no state event
        for ev in initial_state:
            if not isinstance(ev, Mapping):
                continue
            rule = network.state_rules.get(str(ev.get("type")))
            if rule is not None and ev.get("state_key", "") == "":
                content = ev.get("content")
                verdict = rule(content if isinstance(content, Mapping) else None)
                if not verdict.allow:
                    return verdict
    if room_config is None or not network.require_encryption or encrypted_by_default:
        return Decision.ok()
    creation = room_config.get("creation_content")
    room_type = creation.get("type") if isinstance(creation, dict) else None
    if isinstance(room_type, str) and room_type in network.unencrypted_room_types:
        return Decision.ok()
    if not _has_megolm(room_config.get("initial_state")):
        return Decision.no("room_not_encrypted")
    return Decision.ok()


def is_admin_room(create_event: Mapping[str, Any], network: NetworkPolicy) -> bool:
    """A room created by a network admin who is not a verified practitioner.

    Such rooms are where admins talk to the bot. They become admin rooms: closed to all
    but network admins and SantéGuard's own users, and not a place for patient data.
    Until the backstop sees the creation event the room is treated as protected: the
    stricter side.
    """
    return create_event.get("type") == "m.room.create" and create_event.get("sender") in (
        network.admins
    )


def _carries_text(content: Any) -> bool:
    return isinstance(content, Mapping) and any(k in content for k in TEXT_FIELDS)


def message_allowed(event: Mapping[str, Any], room: RoomPolicy, network: NetworkPolicy) -> Decision:
    """Clear content in a protected room is refused (the backstop redacts what slips by).

    Clear text must not ride in state events either: a state event whose type is a
    message type, or not a known room-state type, and whose content carries text
    (``body``, ``formatted_body``) is refused like a clear message.
    """
    if not network.require_encryption or not is_protected(room, network):
        return Decision.ok()
    sender = str(event.get("sender", ""))
    if network.exempt(sender):
        return Decision.ok()
    event_type = event.get("type")
    if "state_key" in event:
        if (event_type in CONTENT_TYPES or event_type not in KNOWN_STATE_TYPES) and (
            _carries_text(event.get("content"))
        ):
            return Decision.no("state_text_not_allowed")
        return Decision.ok()
    if event_type in CONTENT_TYPES:
        return Decision.no("message_not_encrypted")
    return Decision.ok()


def may_send(
    event: Mapping[str, Any],
    verification: Credential | None,
    room: RoomPolicy,
    network: NetworkPolicy,
    now: datetime,
) -> Decision:
    """May this event be sent? In a protected room, only by someone the gate would admit
    there now (a member who slipped in says nothing while the backstop removes them),
    and only encrypted (``message_allowed``)."""
    sender = str(event.get("sender", ""))
    if is_protected(room, network) or room.admin_room:
        who = may_be_member(sender, verification, room, network, now)
        if not who.allow:
            return who
    if event.get("state_key") == "" and is_protected(room, network):
        rule = network.state_rules.get(str(event.get("type")))
        content = event.get("content")
        if rule is not None:
            verdict = rule(content if isinstance(content, Mapping) else None)
            if not verdict.allow:
                return verdict
    return message_allowed(event, room, network)
