"""The throwaway Synapse of ``bridge.devtools.synapse`` really works.

One Synapse (SQLite) is shared by the module: it carries an appservice registration and
the HTTP antispam module, both pointed at a small aiohttp server started here. Lifecycle
tests (restart, stop, start failure, PostgreSQL) use their own instances.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
import yaml
from aiohttp import web

from bridge.devtools.postgres import create_postgres_database, drop_postgres_database
from bridge.devtools.synapse import AntispamModule, LocalSynapse, SynapseStartError
from bridge.registration import build_registration, generate_tokens

PG_ADMIN_DSN = os.environ.get("SANTEGUARD_TEST_PG", "postgres://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("SANTEGUARD_REQUIRE_POSTGRES") == "1"
ANTISPAM_PATH = "/_santeguard/antispam"
REFUSAL = "SantéGuard: not a verified practitioner"


@dataclass
class Recorded:
    path: str
    authorization: str | None
    body: dict[str, Any]


@dataclass
class FakeServices:
    """Stands in for SantéGuard: appservice transactions and antispam callbacks."""

    antispam_token: str = field(repr=False)
    blocked_users: set[str] = field(default_factory=set)
    transactions: list[Recorded] = field(default_factory=list)
    antispam_calls: list[Recorded] = field(default_factory=list)
    url: str = ""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_put("/_matrix/app/v1/transactions/{txn_id}", self._transaction)
        app.router.add_post(ANTISPAM_PATH + "/{callback}", self._antispam)
        return app

    async def _transaction(self, request: web.Request) -> web.Response:
        self.transactions.append(
            Recorded(request.path, request.headers.get("Authorization"), await request.json())
        )
        self._changed.set()
        return web.json_response({})

    async def _antispam(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.antispam_calls.append(
            Recorded(request.path, request.headers.get("Authorization"), body)
        )
        self._changed.set()
        if request.headers.get("Authorization") != f"Bearer {self.antispam_token}":
            return web.json_response({"errcode": "M_FORBIDDEN", "error": "bad token"}, status=401)
        callback = request.match_info["callback"]
        if callback == "user_may_join_room" and body["user"] in self.blocked_users:
            return web.json_response({"errcode": "M_FORBIDDEN", "error": REFUSAL}, status=403)
        return web.json_response({})

    async def wait_for(
        self, records: list[Recorded], match: Callable[[Recorded], bool]
    ) -> Recorded:
        async with asyncio.timeout(10):
            while True:
                for record in records:
                    if match(record):
                        return record
                self._changed.clear()
                await self._changed.wait()


@dataclass
class Harness:
    synapse: LocalSynapse
    fake: FakeServices
    as_token: str = field(repr=False)
    hs_token: str = field(repr=False)
    sender_localpart: str


@pytest.fixture(scope="module")
async def harness(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    workdir = tmp_path_factory.mktemp("synapse")
    fake = FakeServices(antispam_token=secrets.token_urlsafe(16))
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://127.0.0.1:{port}"

    as_token, hs_token = generate_tokens()
    registration = build_registration(
        service_id="santeguard",
        url=fake.url,
        domain="santeguard.test",
        bot_username="santeguard",
        as_token=as_token,
        hs_token=hs_token,
    )
    reg_path = workdir / "santeguard-registration.yaml"
    reg_path.write_text(yaml.safe_dump(registration))

    synapse = LocalSynapse(
        workdir / "hs",
        appservice_registrations=[reg_path],
        antispam=AntispamModule(base_url=fake.url + ANTISPAM_PATH, token=fake.antispam_token),
    )
    try:
        await synapse.start()
        yield Harness(synapse, fake, as_token, hs_token, registration["sender_localpart"])
    finally:
        await synapse.stop()
        await runner.cleanup()


async def _create_room(hs: LocalSynapse, token: str, **extra: Any) -> str:
    _, body = await hs.request("POST", "/_matrix/client/v3/createRoom", token=token, json=extra)
    room_id: str = body["room_id"]
    return room_id


async def _send_text(hs: LocalSynapse, token: str, room_id: str, text: str) -> str:
    path = f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/{secrets.token_hex(8)}"
    _, body = await hs.request("PUT", path, token=token, json={"msgtype": "m.text", "body": text})
    event_id: str = body["event_id"]
    return event_id


@pytest.mark.synapse
async def test_two_users_invite_join_and_read(harness: Harness) -> None:
    hs = harness.synapse
    alice = await hs.register_user(f"alice_{secrets.token_hex(3)}", displayname="Dr Alice")
    bob = await hs.register_user(f"bob_{secrets.token_hex(3)}")
    assert alice.user_id.endswith(":santeguard.test") and alice.device_id

    _, profile = await hs.request(
        "GET", f"/_matrix/client/v3/profile/{quote(alice.user_id)}/displayname"
    )
    assert profile == {"displayname": "Dr Alice"}

    room_id = await _create_room(hs, alice.access_token, invite=[bob.user_id])
    await hs.request(
        "POST", f"/_matrix/client/v3/join/{quote(room_id)}", token=bob.access_token, json={}
    )
    event_id = await _send_text(hs, alice.access_token, room_id, "bonjour Bob")

    _, messages = await hs.request(
        "GET",
        f"/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=b&limit=20",
        token=bob.access_token,
    )
    texts = {e["event_id"]: e["content"].get("body") for e in messages["chunk"]}
    assert texts[event_id] == "bonjour Bob"


@pytest.mark.synapse
async def test_admin_token_is_cached_and_admin(harness: Harness) -> None:
    hs = harness.synapse
    token = await hs.admin_token()
    assert await hs.admin_token() == token
    _, users = await hs.request("GET", "/_synapse/admin/v2/users?limit=1", token=token)
    assert "users" in users


@pytest.mark.synapse
async def test_appservice_receives_transactions(harness: Harness) -> None:
    hs, fake = harness.synapse, harness.fake
    sender = await hs.register_appservice_user(harness.as_token, harness.sender_localpart)
    assert sender == hs.user_id(harness.sender_localpart)
    # Registering again is harmless; the as_token now authenticates as the sender.
    assert await hs.register_appservice_user(harness.as_token, harness.sender_localpart) == sender
    _, whoami = await hs.request("GET", "/_matrix/client/v3/account/whoami", token=harness.as_token)
    assert whoami["user_id"] == sender

    alice = await hs.register_user(f"alice_{secrets.token_hex(3)}")
    room_id = await _create_room(hs, alice.access_token)
    event_id = await _send_text(hs, alice.access_token, room_id, "for the appservice")

    def has_event(record: Recorded) -> bool:
        return any(e.get("event_id") == event_id for e in record.body.get("events", []))

    txn = await fake.wait_for(fake.transactions, has_event)
    assert txn.authorization == f"Bearer {harness.hs_token}"
    assert txn.path.startswith("/_matrix/app/v1/transactions/")
    event = next(e for e in txn.body["events"] if e["event_id"] == event_id)
    assert event["type"] == "m.room.message"
    assert event["content"]["body"] == "for the appservice"
    assert event["room_id"] == room_id


@pytest.mark.synapse
async def test_antispam_refuses_join_and_reason_propagates(harness: Harness) -> None:
    hs, fake = harness.synapse, harness.fake
    owner = await hs.register_user(f"owner_{secrets.token_hex(3)}")
    bob = await hs.register_user(f"bob_{secrets.token_hex(3)}")
    mallory = await hs.register_user(f"mallory_{secrets.token_hex(3)}")
    fake.blocked_users.add(mallory.user_id)
    room_id = await _create_room(hs, owner.access_token, preset="public_chat")
    join = f"/_matrix/client/v3/join/{quote(room_id)}"

    status, body = await hs.request("POST", join, token=mallory.access_token, json={}, expect=None)
    assert status == 403
    assert body["errcode"] == "M_FORBIDDEN"
    assert body["error"] == REFUSAL

    await hs.request("POST", join, token=bob.access_token, json={})

    call = await fake.wait_for(
        fake.antispam_calls,
        lambda r: r.path.endswith("/user_may_join_room") and r.body["user"] == mallory.user_id,
    )
    assert call.authorization == f"Bearer {fake.antispam_token}"
    assert call.body == {"user": mallory.user_id, "room": room_id, "is_invited": False}

    # check_event_for_spam is enabled (and fail-closed): every local message goes through it.
    event_id = await _send_text(hs, bob.access_token, room_id, "checked")
    checked = await fake.wait_for(
        fake.antispam_calls,
        lambda r: (
            r.path.endswith("/check_event_for_spam") and r.body["event"].get("event_id") == event_id
        ),
    )
    assert checked.body["event"]["content"]["body"] == "checked"

    module = yaml.safe_load(hs.config_path.read_text())["modules"][0]
    assert module["module"] == "synapse_http_antispam.HTTPAntispam"
    assert module["config"]["enabled_callbacks"] == [
        "user_may_invite",
        "user_may_join_room",
        "user_may_create_room",
        "check_event_for_spam",
    ]
    assert not any(module["config"]["fail_open"].values())
    assert module["config"]["fail_open"]["check_event_for_spam"] is False


def test_antispam_module_validation() -> None:
    with pytest.raises(ValueError, match="accept_make_join"):
        AntispamModule(base_url="http://x", token="t", callbacks=("accept_make_join",))
    with pytest.raises(ValueError, match="at least one"):
        AntispamModule(base_url="http://x", token="t", callbacks=())
    module = AntispamModule(
        base_url="http://x/", token="s3cr3t-token", fail_open={"check_event_for_spam": True}
    )
    config = module.module_config()["config"]
    assert config["base_url"] == "http://x"
    assert config["fail_open"]["check_event_for_spam"] is True
    assert config["fail_open"]["user_may_join_room"] is False
    assert "s3cr3t-token" not in repr(module)


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.synapse
async def test_restart_keeps_data_and_stop_leaves_no_process(tmp_path: Path) -> None:
    hs = LocalSynapse(tmp_path / "hs")
    await hs.start()
    try:
        first_pid = hs.pid
        assert first_pid is not None
        user = await hs.register_user("carol", "correct horse")
        await hs.restart()
        second_pid = hs.pid
        assert second_pid is not None and second_pid != first_pid
        assert _process_gone(first_pid)
        _, login = await hs.request(
            "POST",
            "/_matrix/client/v3/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "carol"},
                "password": "correct horse",
            },
        )
        assert login["user_id"] == user.user_id
    finally:
        await hs.stop()
    assert hs.pid is None and not hs.running
    assert _process_gone(second_pid)
    await hs.stop()  # idempotent


@pytest.mark.synapse
async def test_start_failure_raises_with_log_tail(tmp_path: Path) -> None:
    # The module without enabled_callbacks registers accept_make_join: Synapse refuses it.
    hs = LocalSynapse(
        tmp_path / "hs",
        extra_config={
            "modules": [
                {
                    "module": "synapse_http_antispam.HTTPAntispam",
                    "config": {"base_url": "http://127.0.0.1:9/antispam"},
                }
            ]
        },
    )
    with pytest.raises(SynapseStartError) as info:
        await hs.start(timeout=30)
    message = str(info.value)
    assert "accept_make_join" in message
    assert hs.registration_shared_secret not in message
    assert hs.pid is None


@pytest.fixture
async def synapse_pg_dsn() -> AsyncIterator[str]:
    if importlib.util.find_spec("psycopg2") is None:
        if REQUIRE_PG:
            pytest.fail("psycopg2 is required for Synapse on PostgreSQL but is not installed")
        pytest.skip("psycopg2 not installed")
    try:
        dsn = await create_postgres_database(PG_ADMIN_DSN)
    except (OSError, asyncpg.PostgresError) as e:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL required but unreachable at {PG_ADMIN_DSN}: {e}")
        pytest.skip(f"PostgreSQL unreachable: {e}")
    try:
        yield dsn
    finally:
        await drop_postgres_database(PG_ADMIN_DSN, dsn)


@pytest.mark.synapse
async def test_postgres_backend_starts(tmp_path: Path, synapse_pg_dsn: str) -> None:
    conn = await asyncpg.connect(synapse_pg_dsn)
    try:
        row = await conn.fetchrow(
            "SELECT datcollate, datctype FROM pg_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    assert row is not None and (row["datcollate"], row["datctype"]) == ("C", "C")

    async with LocalSynapse(tmp_path / "hs", postgres_dsn=synapse_pg_dsn) as hs:
        pid = hs.pid
        assert pid is not None
        user = await hs.register_user("dave")
        _, whoami = await hs.request(
            "GET", "/_matrix/client/v3/account/whoami", token=user.access_token
        )
        assert whoami["user_id"] == user.user_id
        conn = await asyncpg.connect(synapse_pg_dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM users WHERE name = $1", user.user_id)
        finally:
            await conn.close()
    assert _process_gone(pid)
