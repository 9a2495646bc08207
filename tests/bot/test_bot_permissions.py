"""The permission matrix, as a pure function of config admins and room power levels."""

from __future__ import annotations

from typing import Any

import pytest

from bot.commands import Permission
from bot.permissions import check, user_power_level

ADMINS = frozenset({"@admin:sante.example"})
PL: dict[str, Any] = {
    "users": {
        "@pl100:h.example": 100,
        "@pl50:h.example": 50,
        "@pl49:h.example": 49,
        "@muted:h.example": -1,
    },
    "users_default": 0,
}

A, M, R, N = (
    Permission.ANYONE,
    Permission.ROOM_MODERATOR,
    Permission.ROOM_ADMIN,
    Permission.NETWORK_ADMIN,
)

# sender -> permissions they hold in PL
MATRIX = {
    "@admin:sante.example": {A, M, R, N},  # config admin, not even in the room's users
    "@pl100:h.example": {A, M, R},
    "@pl50:h.example": {A, M},
    "@pl49:h.example": {A},
    "@someone:h.example": {A},
    "@muted:h.example": {A},
}


@pytest.mark.parametrize("sender", sorted(MATRIX))
@pytest.mark.parametrize("permission", list(Permission))
def test_permission_matrix(sender: str, permission: Permission) -> None:
    assert check(permission, sender, ADMINS, PL) is (permission in MATRIX[sender])


def test_users_default_applies_to_unlisted_users() -> None:
    pl = {"users": {}, "users_default": 50}
    assert check(M, "@x:h", (), pl)
    assert not check(R, "@x:h", (), pl)


def test_listed_level_wins_over_users_default() -> None:
    pl = {"users": {"@x:h": 0}, "users_default": 100}
    assert not check(M, "@x:h", (), pl)


def test_no_power_levels_event_grants_nothing_beyond_anyone() -> None:
    assert check(A, "@x:h", (), None)
    assert not check(M, "@x:h", (), None)
    assert check(N, "@admin:sante.example", ADMINS, None)


def test_room_creators_have_unlimited_power_but_are_not_network_admins() -> None:
    assert check(R, "@creator:h", (), PL, room_creators={"@creator:h"})
    assert not check(N, "@creator:h", (), PL, room_creators={"@creator:h"})


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"users": {"@x:h": "100"}}, 100),  # string levels exist in old room versions
        ({"users": {"@x:h": True}}, 0),
        ({"users": {"@x:h": 99.5}}, 0),
        ({"users": {"@x:h": "lots"}}, 0),
        ({"users": ["@x:h"], "users_default": 20}, 20),
        ({"users_default": "abc"}, 0),
        ({}, 0),
    ],
)
def test_malformed_power_levels_never_grant_rights(content: dict[str, Any], expected: int) -> None:
    assert user_power_level("@x:h", content) == expected


def test_permission_thresholds() -> None:
    assert (A.min_power_level, M.min_power_level, R.min_power_level) == (0, 50, 100)
    assert N.min_power_level is None
