"""A join's welcome notice tells the room's policy as last seen in the room's stream.

The dispatcher sees every ``m.room.retention`` of a protected room in order, so the
notice needs no homeserver read per join; a redaction (which can strip the policy) and
SantéGuard's own changes are taken into account. The homeserver side here is a recorder
of the calls made: these tests count reads, which only a real homeserver round trip
would make slow.
"""

from __future__ import annotations

from typing import Any

import pytest

from bridge.app.wiring import build_translator
from bridge.retention.policy import RETENTION_EVENT, RetentionBounds
from bridge.retention.service import RetentionPolicies

D = 86_400_000
ROOM = "!care:santeguard.test"
ENFORCER = "@santeguard_control:santeguard.test"


class Homeserver:
    bot_mxid = ENFORCER

    def __init__(self, policy: dict[str, Any] | None) -> None:
        self.policy = policy
        self.reads = 0
        self.notices: list[str] = []

    async def state(self, room_id: str, event_type: str) -> dict[str, Any] | None:
        self.reads += 1
        return self.policy

    async def set_state(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        self.policy = content
        return "$set"

    async def send_notice(self, room_id: str, text: str, html: str | None = None) -> str:
        self.notices.append(text)
        return "$notice"

    async def joined_rooms(self) -> list[str]:
        return [ROOM]


class Audit:
    async def record(self, actor: str, action: str, **kw: Any) -> str:
        return "h"


class Languages:
    async def language(self, room_id: str) -> str | None:
        return "en"


def join(user: str, previous: str | None = "invite") -> dict[str, Any]:
    return {
        "type": "m.room.member",
        "room_id": ROOM,
        "state_key": user,
        "sender": user,
        "content": {"membership": "join"},
        "unsigned": {"prev_content": {"membership": previous}} if previous else {},
    }


def retention(days: int, sender: str = "@admin:santeguard.test") -> dict[str, Any]:
    return {
        "type": RETENTION_EVENT,
        "room_id": ROOM,
        "state_key": "",
        "sender": sender,
        "event_id": f"$r{days}",
        "content": {"max_lifetime": days * D},
    }


@pytest.fixture
def hs() -> Homeserver:
    return Homeserver({"max_lifetime": 90 * D})


@pytest.fixture
def policies(hs: Homeserver) -> RetentionPolicies:
    return RetentionPolicies(
        hs,
        RetentionBounds(default_max_ms=180 * D, min_ms=30 * D, max_ms=365 * D),
        Audit(),
        build_translator(),
        is_protected=lambda room: room == ROOM,
        languages=Languages(),
        default_language="fr",
        own_users=frozenset({ENFORCER}),
    )


async def test_the_first_join_reads_the_policy_later_joins_do_not(
    hs: Homeserver, policies: RetentionPolicies
) -> None:
    for n in range(5):
        assert await policies.on_member(join(f"@nurse{n}:santeguard.test"))
    assert hs.reads == 1
    assert len(hs.notices) == 5 and all("90 day" in n for n in hs.notices)


async def test_a_policy_seen_in_the_stream_is_the_one_told(
    hs: Homeserver, policies: RetentionPolicies
) -> None:
    await policies.on_retention(retention(60))
    hs.policy = {"max_lifetime": 60 * D}
    await policies.on_member(join("@nurse:santeguard.test"))
    assert hs.reads == 0
    assert "60 day" in hs.notices[-1]


async def test_santeguard_own_policy_change_is_remembered(
    hs: Homeserver, policies: RetentionPolicies
) -> None:
    await policies.set(ROOM, {"max_lifetime": 200 * D}, by=ENFORCER)
    # Its own event comes back through the stream: nothing to do, the policy is known.
    assert not await policies.on_retention(retention(200, sender=ENFORCER))
    await policies.on_member(join("@nurse:santeguard.test"))
    assert hs.reads == 0
    assert "200 day" in hs.notices[-1]


async def test_after_a_redaction_the_policy_is_read_again(
    hs: Homeserver, policies: RetentionPolicies
) -> None:
    await policies.on_member(join("@a:santeguard.test"))
    await policies.on_retention(retention(60))
    redaction = {"type": "m.room.redaction", "room_id": ROOM, "redacts": "$r60"}
    assert not await policies.on_redaction(redaction)
    hs.policy = {}  # the redaction stripped max_lifetime: Synapse applies the default
    await policies.on_member(join("@b:santeguard.test"))
    assert hs.reads == 2
    assert "180 day" in hs.notices[-1]


async def test_the_sweep_always_reads_the_homeserver(
    hs: Homeserver, policies: RetentionPolicies
) -> None:
    await policies.on_retention(retention(60))
    hs.policy = None  # removed behind SantéGuard's back: the sweep must see it
    assert await policies.sweep() == 1
    assert hs.policy == {"max_lifetime": 180 * D}
