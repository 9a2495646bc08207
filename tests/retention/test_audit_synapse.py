"""The purge-proof audit against a real Synapse (both databases for SantéGuard):
retention on → proven from the ledger; retention off → violations with the event IDs;
no admin rights → cannot prove; uploads past their lifetime → deleted."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from bridge.devtools.client import SimpleClient
from bridge.devtools.people import practitioner
from bridge.devtools.synapse import RegisteredUser
from bridge.devtools.testconfig import free_port
from bridge.identity.model import Practitioner
from bridge.retention.admin_api import SynapseAdmin
from bridge.retention.audit import AuditRun
from bridge.retention.audit_render import render
from bridge.retention.proof import RoomVerdict
from bridge.retention.text import CATALOG
from tests.retention.conftest import MARGIN_MS, NETWORK_RETENTION, ROOM_LIFETIME_MS, RetentionLab

pytestmark = pytest.mark.synapse

_n = itertools.count()
PURGE_INTERVAL_MS = 2000
MEDIA_LIFETIME_MS = 20_000
assert NETWORK_RETENTION["purge_interval"] == "2s" and NETWORK_RETENTION["max_lifetime"] == "20s"


def doctor() -> Practitioner:
    return practitioner(8888_00000 + next(_n), last="RETENTION", first="Jeanne", profession="10")


def initial_state(lifetime_ms: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "m.room.encryption",
            "state_key": "",
            "content": {"algorithm": "m.megolm.v1.aes-sha2"},
        },
        {"type": "m.room.retention", "state_key": "", "content": {"max_lifetime": lifetime_ms}},
    ]


def fake_megolm(device_id: str) -> dict[str, Any]:
    """An encrypted event on the wire, ciphertext nobody can open."""
    return {
        "algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": "AwgAEpAB" + secrets.token_urlsafe(96),
        "device_id": device_id,
        "sender_key": secrets.token_urlsafe(32)[:43],
        "session_id": secrets.token_urlsafe(32)[:43],
    }


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(what)


async def room_with_messages(
    lab: RetentionLab, count: int = 3
) -> tuple[str, list[str], RegisteredUser, SimpleClient]:
    """A protected room with a short lifetime and ``count`` encrypted messages, all of
    them in SantéGuard's ledger; returns once the last one is past the audit's cutoff."""
    stack = lab.stack
    user, doc = await stack.practitioner(f"ret{next(_n)}", doctor())
    room = await doc.create_room(initial_state=initial_state(ROOM_LIFETIME_MS))

    async def enforcer_joined() -> bool:
        return stack.enforcer_mxid in await doc.joined_members(room)

    await until(enforcer_joined, 20, "enforcement user in the room")
    sent = []
    for _ in range(count):
        data = await doc.request(
            "PUT",
            f"/rooms/{quote(room)}/send/m.room.encrypted/{secrets.token_hex(8)}",
            fake_megolm(user.device_id),
        )
        sent.append(str(data["event_id"]))

    async def in_ledger() -> bool:
        await lab.feed.flush()
        got = {c.event_id for c in await lab.ledger.candidates(room, 2**62, 1000)}
        return set(sent) <= got

    await until(in_ledger, 20, "messages in the ledger")
    newest = max(c.origin_ts for c in await lab.ledger.candidates(room, 2**62, 1000))
    expired_at = newest + ROOM_LIFETIME_MS + PURGE_INTERVAL_MS + MARGIN_MS
    await asyncio.sleep(max(0.0, expired_at / 1000 - time.time()) + 0.5)
    return room, sent, user, doc


def room_result(run: AuditRun, room: str) -> RoomVerdict:
    (result,) = [r.result for r in run.rooms if r.room_id == room]
    return result


def t(key: str, lang: str, /, **params: object) -> str:
    return CATALOG[lang][key].format_map(params)


async def stored_room_row(lab: RetentionLab, run: AuditRun, room: str) -> Any:
    app = lab.stack.santeguard
    assert app is not None
    return await app.db.fetchrow(
        "SELECT * FROM retention_audit_room WHERE run_id = $1 AND room_id = $2", run.run_id, room
    )


async def audited(lab: RetentionLab, action: str, room: str | None = None) -> list[Any]:
    app = lab.stack.santeguard
    assert app is not None
    return [e for e in await app.audit.recent(200) if e.action == action and e.room_id == room]


async def test_expired_history_is_proven_gone(retention_on: RetentionLab) -> None:
    lab = retention_on
    room, sent, _, doc = await room_with_messages(lab)
    async with doc:

        async def purged() -> bool:
            return (await lab.admin.fetch_event(sent[0])).kind == "purged"

        await until(purged, 60, "Synapse's purge job removed the first message")
        run = await lab.audit(in_scope=lambda r: r == room).run()

    result = room_result(run, room)
    assert result.verdict == "proven", result
    assert result.policy_state == "ok" and result.max_lifetime_ms == ROOM_LIFETIME_MS
    assert result.checked >= len(sent) and result.purged >= len(sent) - 1
    assert result.present == 0 and result.evidence == ()
    # Synapse keeps the newest event older than its purge point (and any event concurrent
    # with it); nothing else remains.
    assert len(result.excepted) <= 2
    for event_id in sent[:-1]:
        if event_id not in result.excepted:
            assert (await lab.admin.fetch_event(event_id)).kind == "purged"
    assert (await lab.admin.fetch_event(sent[0])).kind == "purged"
    assert run.verdict.verdict == "proven" and run.admin == "ok"
    # Proven events are marked in the ledger and not probed again.
    remaining = {c.event_id for c in await lab.ledger.candidates(room, 2**62, 1000)}
    assert not set(sent[:-1]) & remaining

    row = await stored_room_row(lab, run, room)
    assert row["verdict"] == "proven" and row["checked"] == result.checked
    (entry,) = [
        e for e in await audited(lab, "retention.audit") if e.details.get("run_id") == run.run_id
    ]
    assert entry.details["verdict"] == "proven"
    assert "✅" in render(run, t, "fr")


async def test_retention_off_is_caught_by_evidence(retention_off: RetentionLab) -> None:
    lab = retention_off
    room, sent, _, doc = await room_with_messages(lab)
    async with doc:
        run = await lab.audit(in_scope=lambda r: r == room).run()

    result = room_result(run, room)
    assert result.verdict == "violations", result
    # Everything but the newest expired event (Synapse's documented exception) is evidence.
    assert set(sent[:-1]) <= set(result.evidence)
    assert sent[-1] not in result.evidence and sent[-1] in result.excepted
    assert result.present == len(result.evidence) >= len(sent) - 1
    for event_id in result.evidence:
        assert (await lab.admin.fetch_event(event_id)).kind == "present"
    assert run.verdict.verdict == "violations"

    row = await stored_room_row(lab, run, room)
    assert row["verdict"] == "violations" and set(sent[:-1]) <= set(json.loads(row["evidence"]))
    (violation,) = await audited(lab, "retention.violation", room)
    assert set(sent[:-1]) <= set(violation.details["evidence"])
    text = render(run, t, "en")
    assert "Retention violated" in text and sent[0] in text


async def test_the_ledger_is_not_the_only_witness(retention_off: RetentionLab) -> None:
    """Events the ledger never saw (a crash before its batch was written) are still
    found by paging the room's history through the admin API."""
    lab = retention_off
    room, sent, _, doc = await room_with_messages(lab)
    app = lab.stack.santeguard
    assert app is not None
    async with doc:
        await app.db.execute("DELETE FROM event_ledger WHERE room_id = $1", room)
        run = await lab.audit(in_scope=lambda r: r == room).run()
    result = room_result(run, room)
    assert result.verdict == "violations" and result.checked == 0
    assert set(sent[:-1]) <= set(result.evidence)


async def test_without_admin_rights_nothing_is_proven(retention_off: RetentionLab) -> None:
    lab = retention_off
    room, _, _, doc = await room_with_messages(lab, count=1)
    await lab.set_enforcer_admin(False)
    try:
        async with doc:
            assert await lab.admin.is_admin() is False
            run = await lab.audit().run()
    finally:
        await lab.set_enforcer_admin(True)
    assert run.admin == "not_admin"
    assert run.verdict.verdict == "cannot_prove" and run.verdict.reason == "not_admin"
    assert run.rooms and all(r.result.verdict == "cannot_prove" for r in run.rooms)
    # The policy is still judged from what the enforcement user sees as a member.
    result = room_result(run, room)
    assert (result.reason, result.policy_state, result.checked) == ("not_admin", "ok", 0)
    assert run.media is None
    text = render(run, t, "fr")
    assert "PAS une validation" in text and "n'est pas administrateur" in text


async def test_unreachable_homeserver_cannot_prove(retention_off: RetentionLab) -> None:
    app = retention_off.stack.santeguard
    assert app is not None
    port = free_port()  # nobody listens there
    dead = SynapseAdmin(
        f"http://127.0.0.1:{port}", "unused-token", retention_off.stack.enforcer_mxid, app.session
    )
    assert await dead.is_admin() is None
    run = await retention_off.audit(admin=dead).run()
    assert (run.verdict.verdict, run.verdict.reason) == ("cannot_prove", "unreachable")


async def _upload(base_url: str, token: str, data: bytes) -> str:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{base_url}/_matrix/media/v3/upload",
            data=data,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/pdf"},
        ) as resp,
    ):
        assert resp.status == 200
        return str((await resp.json())["content_uri"])


async def _download_status(base_url: str, token: str, mxc: str) -> int:
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            f"{base_url}/_matrix/client/v1/media/download/{mxc.removeprefix('mxc://')}",
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        return resp.status


async def test_uploads_past_their_lifetime_are_deleted(retention_on: RetentionLab) -> None:
    lab = retention_on
    stack = lab.stack
    base = stack.synapse.base_url
    user, doc = await stack.practitioner(f"media{next(_n)}", doctor())
    async with doc:
        upload = await _upload(
            base, user.access_token, b"%PDF-1.4 compte rendu " + secrets.token_bytes(64)
        )
        avatar = await _upload(base, user.access_token, secrets.token_bytes(64))
        await doc.request(
            "PUT", f"/profile/{quote(user.user_id)}/avatar_url", {"avatar_url": avatar}
        )
        assert await _download_status(base, user.access_token, upload) == 200
        wait = (MEDIA_LIFETIME_MS + PURGE_INTERVAL_MS + MARGIN_MS) / 1000 + 1
        await asyncio.sleep(wait)
        fresh = await _upload(base, user.access_token, secrets.token_bytes(64))
        run = await lab.audit(in_scope=lambda r: False).run()

    assert run.media is not None and run.media.error is None
    assert run.media.deleted >= 1 and run.media.left == 0
    assert run.media.skipped_avatars >= 1
    media_ids = {m.media_id for m in await lab.admin.user_media(user.user_id)}
    server_name = stack.server_name
    assert upload.removeprefix(f"mxc://{server_name}/") not in media_ids
    assert avatar.removeprefix(f"mxc://{server_name}/") in media_ids  # current avatar kept
    assert fresh.removeprefix(f"mxc://{server_name}/") in media_ids  # not expired
    assert await _download_status(base, user.access_token, upload) == 404
    assert await _download_status(base, user.access_token, avatar) == 200
    app = stack.santeguard
    assert app is not None
    entries = [
        e
        for e in await app.audit.recent(200)
        if e.action == "retention.media_deleted" and e.subject == user.user_id
    ]
    assert entries and upload.rsplit("/", 1)[1] in entries[0].details["media_ids"]
    assert run.summary()["media_deleted"] == run.media.deleted
