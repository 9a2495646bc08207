"""Who may run what: a pure function of the sender, the config admins and the power levels."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from bot.commands import Permission

_NO_EVENT_DEFAULT = 0


def _as_level(value: object) -> int | None:
    """A power level as the spec allows it (ints; numeric strings in old room versions)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def user_power_level(sender: str, power_levels_content: Mapping[str, Any] | None) -> int:
    """The sender's power level from ``m.room.power_levels`` content.

    Malformed values count as 0 rather than guessing: a broken event must never grant rights.
    Without the event at all everyone is at 0 here (the room creator's implicit 100 is
    covered by ``room_creators`` in `check`).
    """
    if not power_levels_content:
        return _NO_EVENT_DEFAULT
    users = power_levels_content.get("users")
    if isinstance(users, Mapping) and sender in users:
        return _as_level(users[sender]) or 0
    return _as_level(power_levels_content.get("users_default", 0)) or 0


def check(
    permission: Permission,
    sender: str,
    admins: Collection[str],
    power_levels_content: Mapping[str, Any] | None,
    *,
    room_creators: Collection[str] = (),
) -> bool:
    """Whether ``sender`` holds ``permission`` in the room.

    Config admins (``bot.admins``) always pass. ``room_creators`` are the users with
    unlimited power in room version 12+ (they are absent from ``users``), or the creator of
    a room that has no power-levels event yet; give them when known.
    """
    if sender in admins or permission is Permission.ANYONE:
        return True
    needed = permission.min_power_level
    if needed is None:
        return False
    if sender in room_creators:
        return True
    return user_power_level(sender, power_levels_content) >= needed
