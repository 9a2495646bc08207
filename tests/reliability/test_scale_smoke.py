"""The scale benchmark's code path at a small size: 300 rooms, 3,000 users.

``bench.scale`` measures SantéGuard with 10,000 rooms and 100,000 users; this runs the
same loading (an extract imported and users bound through ``Binder.verify``, the rooms
delivered as appservice transactions to a local fake of the homeserver's API) and the
same restart, then checks what the figures rest on: after a restart every room and
binding is back in the snapshots, the gate admits a verified member and refuses an
unverified user, the reconcile sweep finds nothing to remove, and the retention audit
proves every room's expired message purged. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp

from bench.common import GATE_TOKEN, free_port
from bench.scale_fakehs import serve
from bench.scale_host import (
    bind_directory,
    drained,
    hold_jobs,
    scale_config,
    send_transactions,
    snapshot_counts,
)
from bench.scale_net import EXPIRED_MESSAGES, Network
from bridge.app import SanteGuard

ROOMS, USERS = 300, 3000


async def _gate(port: int, user: str, room: str) -> int:
    url = f"http://127.0.0.1:{port}/_santeguard/antispam/user_may_join_room"
    body = json.dumps({"user": user, "room": room, "is_invited": False})
    headers = {"Authorization": f"Bearer {GATE_TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers) as r:
        return r.status


async def test_scale_smoke(tmp_path: Path) -> None:
    net = Network(ROOMS, USERS, epoch_ms=int(time.time() * 1000))
    hs_port, stop_hs = free_port(), asyncio.Event()
    hs = asyncio.create_task(serve(net, hs_port, stop_hs))
    homeserver = f"http://127.0.0.1:{hs_port}"
    uri = f"sqlite:///{tmp_path / 'santeguard.db'}"
    try:
        port = free_port()
        app = SanteGuard(scale_config(uri, homeserver, port, tmp_path))
        hold_jobs(app)
        await app.start()
        try:
            assert await bind_directory(app, net, tmp_path) == net.verified
            await send_transactions(port, list(net.transactions()), "smoke")
            await drained(app, 120)
            assert await app.queue.failed_count() == 0  # every event handled, none dead
        finally:
            await app.stop()

        port = free_port()
        app = SanteGuard(scale_config(uri, homeserver, port, tmp_path))
        hold_jobs(app)
        await app.start()
        try:
            counts = snapshot_counts(app, net)
            assert counts == {
                "verified": net.verified,
                "bot_rooms": len([i for i in range(ROOMS) if net.has_bot(i)]),
                "protected_rooms": ROOMS,
            }
            members = await app.room_policies.members_of(net.room_id(ROOMS - 1))
            assert sorted(members) == sorted(net.members(ROOMS - 1))

            room = net.room_id(7)
            assert await _gate(port, net.members(8)[3], room) == 200
            assert await _gate(port, net.unverified_user(0), room) == 403

            assert await app.reconciler.sweep() == 0
            rows = await app.db.fetchval(
                "SELECT COUNT(*) FROM room_member WHERE membership = 'join' AND user_id LIKE '@ps%'"
            )
            assert rows == ROOMS * net.members_per_room

            run = await app.retention.audit.run()
            summary = run.summary()
            assert summary["verdict"] == "proven", summary
            assert summary["rooms"] == ROOMS
            assert summary["purged"] == ROOMS * EXPIRED_MESSAGES
        finally:
            await app.stop()
    finally:
        stop_hs.set()
        await hs
