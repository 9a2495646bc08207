"""Inactive rooms on a real Synapse (both databases): announced to their members ahead,
then closed and their history purged through the admin API, each step audited; a
message after the announcement keeps the room open."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest

from bridge.devtools.client import MatrixError, SimpleClient
from bridge.devtools.people import practitioner
from bridge.devtools.stack import DevStack
from tests.conftest import _started_stack
from tests.retention.test_room_policy import ENCRYPTED, eventually, notice

pytestmark = pytest.mark.synapse

INACTIVE: dict[str, object] = {
    "min_lifetime": "1s",
    "default_max_lifetime": "1h",
    "max_lifetime": "1d",
    "purge_interval": "1s",
    "inactive_after": "6s",
    "inactive_notice": "3s",
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
async def idle_stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_database: str | None,
) -> AsyncIterator[DevStack]:
    dev = await _started_stack(
        request.param, "inactive", tmp_path_factory, pg_database, retention=INACTIVE
    )
    try:
        yield dev
    finally:
        await dev.stop()


def fake_megolm(device_id: str) -> dict[str, Any]:
    return {
        "algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": secrets.token_urlsafe(48),
        "device_id": device_id,
        "sender_key": secrets.token_urlsafe(32),
        "session_id": secrets.token_urlsafe(32),
    }


async def send_encrypted(client: SimpleClient, device_id: str, room: str) -> str:
    data = await client.request(
        "PUT",
        f"/rooms/{quote(room)}/send/m.room.encrypted/{secrets.token_hex(8)}",
        fake_megolm(device_id),
    )
    return str(data["event_id"])


async def actions(stack: DevStack, room: str) -> list[str]:
    assert stack.santeguard is not None
    entries = await stack.santeguard.audit.recent(100, room_id=room)
    return [e.action for e in reversed(entries)]


async def step_until(stack: DevStack, room: str, action: str, timeout: float = 40) -> list[str]:
    """Run the inactivity check (the scheduled job's body) until ``action`` is audited."""
    sg = stack.santeguard
    assert sg is not None and sg.retention.inactive is not None
    inactive = sg.retention.inactive

    async def done() -> list[str]:
        await inactive.run()
        found = await actions(stack, room)
        return found if action in found else []

    result: list[str] = await eventually(done, timeout=timeout)
    return result


async def _doc(stack: DevStack, n: int) -> tuple[Any, SimpleClient]:
    return await stack.practitioner(
        f"idle{n}{secrets.token_hex(3)}", practitioner(6666_00000 + n, last="INACTIF", first="Paul")
    )


async def test_inactive_room_is_announced_then_closed_and_purged(idle_stack: DevStack) -> None:
    sg = idle_stack.santeguard
    assert sg is not None and sg.retention.admin is not None
    user, doc = await _doc(idle_stack, 1)
    async with doc:
        room = await doc.create_room(initial_state=ENCRYPTED)
        await eventually(lambda: _has(doc, room, idle_stack.enforcer_mxid))
        said = await send_encrypted(doc, user.device_id, room)
        found = await step_until(idle_stack, room, "retention.inactive_announced")
        assert "retention.inactive_closed" not in found
        announced = await doc.wait_for_event(room, notice(idle_stack.enforcer_mxid, "inactif"))
        assert "sera fermé" in announced["content"]["body"]
        found = await step_until(idle_stack, room, "retention.inactive_purged")
        order = [
            found.index(a)
            for a in (
                "retention.inactive_announced",
                "retention.inactive_closed",
                "retention.inactive_purged",
            )
        ]
        assert order == sorted(order)
        # The room is gone for its members, and its history from the homeserver.
        assert room not in (await doc.request("GET", "/joined_rooms"))["joined_rooms"]
        assert await sg.retention.admin.event_purged(said)
        purged = next(
            e
            for e in await sg.audit.recent(100, room_id=room)
            if e.action == "retention.inactive_purged"
        )
        assert purged.details["checked"] >= 1
        assert purged.details["present"] == 0
        with pytest.raises(MatrixError):
            await send_encrypted(doc, user.device_id, room)


async def test_activity_after_the_announcement_keeps_the_room(idle_stack: DevStack) -> None:
    user, doc = await _doc(idle_stack, 2)
    async with doc:
        room = await doc.create_room(initial_state=ENCRYPTED)
        await eventually(lambda: _has(doc, room, idle_stack.enforcer_mxid))
        await step_until(idle_stack, room, "retention.inactive_announced")
        await send_encrypted(doc, user.device_id, room)
        found = await step_until(idle_stack, room, "retention.inactive_cancelled")
        assert "retention.inactive_closed" not in found
        assert room in (await doc.request("GET", "/joined_rooms"))["joined_rooms"]


async def test_without_admin_rights_the_room_is_not_closed_and_admins_are_told(
    idle_stack: DevStack,
) -> None:
    _, doc = await _doc(idle_stack, 3)
    await idle_stack.make_enforcer_admin(False)
    try:
        async with doc:
            room = await doc.create_room(initial_state=ENCRYPTED)
            await eventually(lambda: _has(doc, room, idle_stack.enforcer_mxid))
            found = await step_until(idle_stack, room, "retention.inactive_close_failed")
            assert "retention.inactive_closed" not in found
            assert room in (await doc.request("GET", "/joined_rooms"))["joined_rooms"]
    finally:
        await idle_stack.make_enforcer_admin(True)


async def _has(client: SimpleClient, room: str, user: str) -> bool:
    return user in await client.joined_members(room)
