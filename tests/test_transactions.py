"""The durable transaction endpoint, against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from bridge.app import SanteGuard
from bridge.core.errors import TransientError
from tests.helpers import GATE_TOKEN, HS_TOKEN, make_config, message_event

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.fail_ids: dict[str, int] = {}
        self.transient_ids: dict[str, int] = {}
        self.block = asyncio.Event()
        self.block.set()

    async def __call__(self, event: dict[str, Any]) -> bool:
        await self.block.wait()
        eid = event["event_id"]
        if self.transient_ids.get(eid, 0) > 0:
            self.transient_ids[eid] -= 1
            raise TransientError("homeserver down (test)")
        if self.fail_ids.get(eid, 0) > 0:
            self.fail_ids[eid] -= 1
            raise RuntimeError("poisoned event (test)")
        self.seen.append(eid)
        return True


@pytest.fixture
async def running(db_uri: str) -> AsyncIterator[tuple[SanteGuard, str, Recorder]]:
    rec = Recorder()
    app = SanteGuard(make_config(db_uri))
    app.routes.on("m.room.message", rec)
    await app.start()
    try:
        yield app, app.config.appservice.address, rec
    finally:
        await app.stop()


async def put_txn(
    base: str,
    txn_id: str,
    body: Any,
    token: str | None = HS_TOKEN,
    raw: bytes | None = None,
    query: str = "",
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as s,
        s.put(
            f"{base}/_matrix/app/v1/transactions/{txn_id}{query}", data=data, headers=headers
        ) as resp,
    ):
        return resp.status, await resp.json()


async def test_transaction_is_committed_before_ack(
    running: tuple[SanteGuard, str, Recorder],
) -> None:
    app, base, rec = running
    rec.block.clear()  # handling cannot happen before we look
    status, body = await put_txn(base, "t1", {"events": [message_event("!r:x", 1)]})
    assert (status, body) == (200, {})
    stored = await app.db.fetchval("SELECT COUNT(*) FROM txn WHERE txn_id = 't1'")
    assert stored == 1
    assert rec.seen == []
    assert await app.queue.depth() == 1
    rec.block.set()
    assert app.dispatcher is not None
    await app.dispatcher.wait_idle()
    assert rec.seen == ["$ev1-r"]
    assert await app.queue.depth() == 0


async def test_replayed_txn_is_acked_but_not_processed_again(
    running: tuple[SanteGuard, str, Recorder],
) -> None:
    app, base, rec = running
    payload = {"events": [message_event("!r:x", 1), message_event("!r:x", 2)]}
    assert (await put_txn(base, "dup", payload))[0] == 200
    assert app.dispatcher is not None
    await app.dispatcher.wait_idle()
    assert (await put_txn(base, "dup", payload))[0] == 200
    await app.dispatcher.wait_idle()
    assert rec.seen == ["$ev1-r", "$ev2-r"]
    metrics = app.metrics.render().decode()
    assert 'santeguard_transactions_total{outcome="replayed"} 1.0' in metrics


async def test_crash_between_ack_and_handling_loses_nothing(db_uri: str) -> None:
    cfg = make_config(db_uri)
    first = Recorder()
    first.block.clear()  # the first instance acks, then "crashes" before handling
    app1 = SanteGuard(cfg)
    app1.routes.on("m.room.message", first)
    await app1.start()
    payload = {"events": [message_event("!r:x", i) for i in range(5)]}
    assert (await put_txn(cfg.appservice.address, "crash-1", payload))[0] == 200
    await app1.stop()
    assert first.seen == []

    second = Recorder()
    app2 = SanteGuard(cfg)
    app2.routes.on("m.room.message", second)
    await app2.start()
    try:
        assert app2.dispatcher is not None
        await app2.dispatcher.wait_idle()
        assert second.seen == [f"$ev{i}-r" for i in range(5)]
        # The homeserver retries the same txnId after the restart: acked, not re-run.
        assert (await put_txn(cfg.appservice.address, "crash-1", payload))[0] == 200
        await app2.dispatcher.wait_idle()
        assert len(second.seen) == 5
    finally:
        await app2.stop()


async def test_order_within_room_and_progress_across_rooms(
    running: tuple[SanteGuard, str, Recorder],
) -> None:
    app, base, rec = running
    events = []
    for i in range(20):
        events.append(message_event("!a:x", i))
        events.append(message_event("!b:x", 100 + i))
    assert (await put_txn(base, "mix", {"events": events}))[0] == 200
    assert app.dispatcher is not None
    await app.dispatcher.wait_idle()
    in_a = [e for e in rec.seen if e.endswith("-a")]
    in_b = [e for e in rec.seen if e.endswith("-b")]
    assert in_a == [f"$ev{i}-a" for i in range(20)]
    assert in_b == [f"$ev{100 + i}-b" for i in range(20)]


async def test_poisoned_event_is_marked_failed_and_room_moves_on(
    running: tuple[SanteGuard, str, Recorder],
) -> None:
    app, base, rec = running
    rec.fail_ids["$ev2-r"] = 99
    rec.transient_ids["$ev3-r"] = 4  # outage: retried beyond max_attempts, then succeeds
    payload = {"events": [message_event("!r:x", i) for i in range(1, 5)]}
    assert (await put_txn(base, "poison", payload))[0] == 200
    assert app.dispatcher is not None
    await app.dispatcher.wait_idle()
    assert rec.seen == ["$ev1-r", "$ev3-r", "$ev4-r"]
    row = await app.db.fetchrow(
        "SELECT room_id, event_type, attempts, last_error FROM dead_letter "
        "WHERE event_id = '$ev2-r'"
    )
    assert row is not None
    assert (row["room_id"], row["event_type"], row["attempts"]) == ("!r:x", "m.room.message", 3)
    assert "poisoned" in row["last_error"]
    assert await app.queue.failed_count() == 1
    metrics = app.metrics.render().decode()
    assert 'santeguard_events_handled_total{outcome="done"} 3.0' in metrics
    assert 'santeguard_events_handled_total{outcome="failed"} 1.0' in metrics
    # The transaction still completes: the dead letter is its record of that event.
    assert await app.db.fetchval("SELECT status FROM txn WHERE txn_id = 'poison'") == "handled"


@pytest.mark.parametrize(
    ("token", "query", "status", "errcode"),
    [
        (None, "", 401, "M_UNAUTHORIZED"),
        ("wrong-token", "", 403, "M_FORBIDDEN"),
        (None, "?access_token=wrong", 403, "M_FORBIDDEN"),
        (HS_TOKEN, "?access_token=wrong", 403, "M_FORBIDDEN"),
        (None, f"?access_token={HS_TOKEN}", 200, None),
    ],
)
async def test_token_checks(
    running: tuple[SanteGuard, str, Recorder],
    token: str | None,
    query: str,
    status: int,
    errcode: str | None,
) -> None:
    _, base, _ = running
    got, body = await put_txn(
        base, f"auth{status}{bool(token)}", {"events": []}, token=token, query=query
    )
    assert got == status
    assert body.get("errcode") == errcode


@pytest.mark.parametrize(
    ("raw", "errcode", "fragment"),
    [
        (b"{not json", "M_NOT_JSON", "not valid JSON"),
        (b"\xff\xfe", "M_NOT_JSON", "not valid JSON"),
        (b"[]", "M_BAD_JSON", "JSON object"),
        (b"{}", "M_BAD_JSON", "'events'"),
        (b'{"events": {}}', "M_BAD_JSON", "array"),
        (b'{"events": [1]}', "M_BAD_JSON", "events[0] must be an object"),
        (
            b'{"events": [{"type": "m.room.message", "room_id": "!r:x", "sender": "@a:x"}]}',
            "M_BAD_JSON",
            "events[0].event_id is missing",
        ),
        (
            b'{"events": [{"type": 5, "event_id": "$e", "room_id": "!r:x", "sender": "@a:x"}]}',
            "M_BAD_JSON",
            "events[0].type must be a non-empty string",
        ),
        (
            b'{"events": [{"type": "x", "event_id": "$e", "room_id": "!r:x", "sender": "@a:x", '
            b'"content": []}]}',
            "M_BAD_JSON",
            "content must be an object",
        ),
        (b'{"events": [], "to_device": 3}', "M_BAD_JSON", "'to_device' must be an array"),
    ],
)
async def test_malformed_bodies_get_precise_400(
    running: tuple[SanteGuard, str, Recorder], raw: bytes, errcode: str, fragment: str
) -> None:
    app, base, _ = running
    status, body = await put_txn(base, "bad", None, raw=raw)
    assert status == 400
    assert body["errcode"] == errcode
    assert fragment in body["error"]
    assert await app.db.fetchval("SELECT COUNT(*) FROM txn") == 0
    assert "santeguard_rejected_requests_total" in app.metrics.render().decode()


async def test_oversized_body_gets_413(running: tuple[SanteGuard, str, Recorder]) -> None:
    app, base, _ = running
    big = {"events": [message_event("!r:x", i, body="x" * 2000) for i in range(200)]}
    status, body = await put_txn(base, "big", big)
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")
    assert await app.db.fetchval("SELECT COUNT(*) FROM txn") == 0


async def test_custom_event_types_are_stored_and_counted(
    running: tuple[SanteGuard, str, Recorder],
) -> None:
    app, base, rec = running
    ev = {
        "type": "org.example.custom",
        "event_id": "$c",
        "room_id": "!r:x",
        "sender": "@a:x",
        "content": {},
    }
    assert (await put_txn(base, "custom", {"events": [ev]}))[0] == 200
    assert app.dispatcher is not None
    await app.dispatcher.wait_idle()
    assert rec.seen == []  # not a message: ignored by the handlers, but stored and done
    assert await app.db.fetchval("SELECT status FROM txn WHERE txn_id = 'custom'") == "handled"
    assert 'santeguard_events_total{type="other"} 1.0' in app.metrics.render().decode()


async def test_other_routes(running: tuple[SanteGuard, str, Recorder]) -> None:
    app, base, _ = running
    auth = {"Authorization": f"Bearer {HS_TOKEN}"}
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/_matrix/app/v1/nope", headers=auth) as r:
            assert (r.status, (await r.json())["errcode"]) == (404, "M_UNRECOGNIZED")
        async with s.get(f"{base}/_matrix/app/v1/transactions/x", headers=auth) as r:
            assert (r.status, (await r.json())["errcode"]) == (405, "M_UNRECOGNIZED")
        async with s.post(f"{base}/_matrix/app/v1/ping", headers=auth, json={}) as r:
            assert (r.status, await r.json()) == (200, {})
        async with s.post(f"{base}/_matrix/app/v1/ping", json={}) as r:
            assert r.status == 401
        async with s.get(f"{base}/_matrix/app/v1/rooms/%23a:x", headers=auth) as r:
            assert (r.status, (await r.json())["errcode"]) == (404, "M_NOT_FOUND")
        async with s.get(f"{base}/_matrix/app/v1/users/@someone:x", headers=auth) as r:
            assert (r.status, (await r.json())["errcode"]) == (404, "M_NOT_FOUND")
        async with s.get(f"{base}/health") as r:
            assert (r.status, await r.json()) == (200, {"status": "ok"})
        async with s.get(f"{base}/ready") as r:
            # Homeserver at 127.0.0.1:9 is unreachable: not ready, database fine.
            body = await r.json()
            assert r.status == 503
            # Replicas on PostgreSQL also report their change feed (docs/cluster.md).
            feed = {"change_feed": True} if app.cluster.shared else {}
            assert body["checks"] == {"database": True, "homeserver": False, **feed}
        async with s.get(f"{base}/metrics") as r:
            assert r.status == 200
            assert "santeguard_queue_depth" in await r.text()


async def test_gate_placeholder(running: tuple[SanteGuard, str, Recorder]) -> None:
    app, base, _ = running
    path = f"{base}{app.config.antispam.path}"
    gate = {"Authorization": f"Bearer {GATE_TOKEN}"}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{path}/ping", headers=gate, json={"id": "abc"}) as r:
            assert (r.status, await r.json()) == (200, {"id": "abc", "status": "ok"})
        async with s.post(
            f"{path}/user_may_join_room",
            headers=gate,
            json={"user": "@a:x", "room": "!r:x", "is_invited": False},
        ) as r:
            assert (r.status, await r.json()) == (200, {})
        async with s.post(f"{path}/user_may_join_room", json={}) as r:
            assert r.status == 403
        async with s.post(
            f"{path}/user_may_join_room", headers={"Authorization": f"Bearer {HS_TOKEN}"}, json={}
        ) as r:
            assert r.status == 403  # the homeserver token is not the gate token
        async with s.post(f"{path}/no_such_callback", headers=gate, json={}) as r:
            assert (r.status, (await r.json())["errcode"]) == (404, "M_UNRECOGNIZED")
        async with s.post(f"{path}/user_may_invite", headers=gate, data=b"{") as r:
            assert (r.status, (await r.json())["errcode"]) == (400, "M_NOT_JSON")


async def test_storage_down_means_no_ack(running: tuple[SanteGuard, str, Recorder]) -> None:
    app, base, rec = running
    await app.db.execute("DROP TABLE txn")  # the database refuses writes
    status, body = await put_txn(base, "lost?", {"events": [message_event("!r:x", 1)]})
    assert (status, body["errcode"]) == (503, "M_UNKNOWN")
    assert rec.seen == []
