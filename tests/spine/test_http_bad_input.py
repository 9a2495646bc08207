"""Bad input gets a precise 4xx from every endpoint, never a 500, and never an "allow".

A real SantéGuard answers hand-written HTTP (``asyncio.open_connection``) where aiohttp's
client would refuse to send the request: header bytes that are not UTF-8, a body that
does not match its ``Content-Encoding``, JSON nested past the parser's limit.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from bridge.app import SanteGuard
from tests.helpers import GATE_TOKEN, HS_TOKEN, make_config

TXN = b"/_matrix/app/v1/transactions/"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture
async def app(db_uri: str) -> AsyncIterator[SanteGuard]:
    santeguard = SanteGuard(make_config(db_uri))
    await santeguard.start()
    try:
        yield santeguard
    finally:
        await santeguard.stop()


async def send(
    app: SanteGuard,
    method: bytes,
    path: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
) -> Reply:
    """One raw HTTP/1.1 request, on its own connection; the reply as the server sent it."""
    head = b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    request = (
        method + b" " + path + b" HTTP/1.1\r\nHost: sg\r\nConnection: close\r\n" + head
        + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip
    reader, writer = await asyncio.open_connection("127.0.0.1", app.config.appservice.port)
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head_bytes, _, content = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in header_lines)
    return Reply(int(status_line.split(" ")[1]), {k.lower(): v for k, v in fields.items()}, content)


def hs_auth(token: bytes = HS_TOKEN.encode()) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", b"Bearer " + token), (b"Content-Type", b"application/json")]


def gate_auth() -> list[tuple[bytes, bytes]]:
    return hs_auth(GATE_TOKEN.encode())


def gate_path(app: SanteGuard, callback: str) -> bytes:
    return f"{app.config.antispam.path}/{callback}".encode()


@pytest.fixture
def no_500(caplog: pytest.LogCaptureFixture) -> AsyncIterator[None]:
    """Fails the test if the server logged an unhandled error (what a 500 comes from)."""
    caplog.set_level(logging.ERROR, logger="santeguard.http")
    yield None
    unhandled = [r for r in caplog.records if r.name == "santeguard.http"]
    assert unhandled == [], [r.getMessage() for r in unhandled]


# -- Authorization headers that are not UTF-8 --------------------------------------------


@pytest.mark.parametrize("token", [b"\xff\xfe", b"caf\xe9", HS_TOKEN.encode() + b"\x80"])
async def test_non_utf8_authorization_is_403_on_every_endpoint(
    app: SanteGuard, no_500: None, token: bytes
) -> None:
    requests = [
        (b"PUT", TXN + b"a1", b'{"events": []}', "invalid homeserver token"),
        (b"GET", b"/_matrix/app/v1/users/@a:x", b"", "invalid homeserver token"),
        (b"GET", b"/_matrix/app/v1/rooms/%23a:x", b"", "invalid homeserver token"),
        (b"POST", b"/_matrix/app/v1/ping", b"{}", "invalid homeserver token"),
        (b"POST", gate_path(app, "user_may_invite"), b"{}", "invalid gate token"),
        (b"POST", gate_path(app, "ping"), b"{}", "invalid gate token"),
    ]
    for method, path, body, message in requests:
        reply = await send(app, method, path, hs_auth(token), body)
        assert (reply.status, reply.json()) == (
            403,
            {"errcode": "M_FORBIDDEN", "error": message},
        ), path
    assert await app.db.fetchval("SELECT COUNT(*) FROM txn") == 0


async def test_non_utf8_query_token_is_403(app: SanteGuard, no_500: None) -> None:
    reply = await send(app, b"PUT", TXN + b"q1?access_token=%ff%ed%a0%80", [], b'{"events":[]}')
    assert (reply.status, reply.json()["errcode"]) == (403, "M_FORBIDDEN")


# -- JSON nested deeper than the parser allows -------------------------------------------


@pytest.mark.parametrize("depth", [1_000, 100_000])
async def test_deep_json_is_a_400(app: SanteGuard, no_500: None, depth: int) -> None:
    deep = b'{"events": ' + b"[" * depth + b"]" * depth + b"}"
    reply = await send(app, b"PUT", TXN + b"deep", hs_auth(), deep)
    assert reply.status == 400
    assert reply.json() == {
        "errcode": "M_BAD_JSON",
        "error": "body nests JSON deeper than SantéGuard parses",
    }
    assert await app.db.fetchval("SELECT COUNT(*) FROM txn") == 0
    for callback in ("check_event_for_spam", "user_may_invite", "ping"):
        nested = b'{"event": ' + b"[" * depth + b"]" * depth + b"}"
        reply = await send(app, b"POST", gate_path(app, callback), gate_auth(), nested)
        assert (reply.status, reply.json()["errcode"]) == (400, "M_BAD_JSON"), callback
    assert 'reason="too_deep"' in app.metrics.render().decode()


# -- Content-Encoding that does not match the body ---------------------------------------


@pytest.mark.parametrize("encoding", [b"gzip", b"deflate"])
async def test_body_that_does_not_decode_is_a_400_and_closes(
    app: SanteGuard, no_500: None, encoding: bytes
) -> None:
    headers = [*hs_auth(), (b"Content-Encoding", encoding)]
    reply = await send(app, b"PUT", TXN + b"gz", headers, b'{"events": []}')
    assert reply.status == 400
    assert reply.json() == {
        "errcode": "M_NOT_JSON",
        "error": f"body could not be decoded as {encoding.decode()}",
    }
    # The parser cannot be trusted past a broken body: the connection is not reused.
    assert reply.headers.get("connection", "").lower() == "close"
    gate_headers = [*gate_auth(), (b"Content-Encoding", encoding)]
    body = b'{"inviter": "@a:x"}'
    reply = await send(app, b"POST", gate_path(app, "user_may_invite"), gate_headers, body)
    assert (reply.status, reply.json()["errcode"]) == (400, "M_NOT_JSON")
    # A body too short to start decoding fails in aiohttp's parser, before any handler:
    # still a 400 (plain text), never an answer from the gate.
    reply = await send(app, b"POST", gate_path(app, "user_may_invite"), gate_headers, b"{}")
    assert reply.status == 400
    assert await app.db.fetchval("SELECT COUNT(*) FROM txn") == 0


async def test_real_gzip_is_read(app: SanteGuard, no_500: None) -> None:
    headers = [*hs_auth(), (b"Content-Encoding", b"gzip")]
    reply = await send(app, b"PUT", TXN + b"gz-ok", headers, gzip.compress(b'{"events": []}'))
    assert (reply.status, reply.json()) == (200, {})


async def test_unsupported_encoding_is_a_4xx(app: SanteGuard, no_500: None) -> None:
    headers = [*hs_auth(), (b"Content-Encoding", b"br")]
    reply = await send(app, b"PUT", TXN + b"br", headers, b'{"events": []}')
    assert 400 <= reply.status < 500  # refused by aiohttp's parser, before any handler


# -- gate payloads that are not what the module sends ------------------------------------


@pytest.mark.parametrize(
    ("callback", "body", "message"),
    [
        ("check_event_for_spam", {"event": "m.room.message"}, "event must be an object"),
        ("check_event_for_spam", {"event": ["x"]}, "event must be an object"),
        ("federated_user_may_invite", {"event": "invite"}, "event must be an object"),
        ("check_event_for_spam", {}, "event is missing"),
        ("check_event_for_spam", {"event": {}}, "event.type is missing"),
        ("user_may_invite", {"invitee": "@santeguard:santeguard.test"}, "inviter is missing"),
        ("user_may_join_room", {"user": "@a:x", "room": 5}, "room must be a non-empty string"),
        ("user_may_create_room", {"user_id": "@a:x", "room_config": "x"}, "room_config must"),
        ("user_may_invite", [], "body must be a JSON object"),
        ("ping", "x", "body must be a JSON object"),
    ],
)
async def test_malformed_gate_payload_is_a_precise_400(
    app: SanteGuard, no_500: None, callback: str, body: Any, message: str
) -> None:
    raw = json.dumps(body).encode()
    reply = await send(app, b"POST", gate_path(app, callback), gate_auth(), raw)
    assert reply.status == 400
    assert reply.json()["errcode"] == "M_BAD_JSON"
    assert reply.json()["error"].startswith(message)
    metrics = app.metrics.render().decode()
    assert "santeguard_rejected_requests_total" in metrics
    assert 'decision="allow"' not in metrics  # nothing reached the gate


async def test_invitations_by_email_or_phone_are_refused_with_a_reason(
    app: SanteGuard, no_500: None
) -> None:
    body = {
        "inviter": "@a:santeguard.test",
        "medium": "email",
        "address": "a@b.fr",
        "room_id": "!r:x",
    }
    raw = json.dumps(body).encode()
    reply = await send(app, b"POST", gate_path(app, "user_may_send_3pid_invite"), gate_auth(), raw)
    assert (reply.status, reply.json()["errcode"]) == (403, "M_FORBIDDEN")
    assert "adresse e-mail ou numéro de téléphone" in reply.json()["error"]
    assert "e-mail address or phone number" in reply.json()["error"]
    empty = await send(
        app, b"POST", gate_path(app, "user_may_send_3pid_invite"), gate_auth(), b"{}"
    )
    assert empty.status == 400  # refused, never decided on missing fields


async def test_lone_surrogate_in_a_gate_payload_is_a_400(app: SanteGuard, no_500: None) -> None:
    raw = b'{"inviter": "@a:x", "invitee": "@b\\ud800:x", "room_id": "!r:x"}'
    reply = await send(app, b"POST", gate_path(app, "user_may_invite"), gate_auth(), raw)
    assert (reply.status, reply.json()["error"]) == (400, "invitee is not valid UTF-8")


@pytest.mark.parametrize(
    ("callback", "status", "errcode"),
    [
        ("user_may_create_room_alias", 404, "M_UNRECOGNIZED"),
        ("user_may_publish_room", 404, "M_UNRECOGNIZED"),
        ("check_username_for_spam", 404, "M_UNRECOGNIZED"),
        ("accept_make_join", 404, "M_UNRECOGNIZED"),
        ("no_such_callback", 404, "M_UNRECOGNIZED"),
    ],
)
async def test_callbacks_the_gate_does_not_decide_are_never_allowed(
    app: SanteGuard, no_500: None, callback: str, status: int, errcode: str
) -> None:
    bodies = [
        {
            "inviter": "@a:santeguard.test",
            "medium": "email",
            "address": "a@b.fr",
            "room_id": "!r:x",
        },
        {"user_id": "@a:santeguard.test", "room_alias": "#a:x", "room_id": "!r:x"},
        {},
    ]
    for body in bodies:
        raw = json.dumps(body).encode()
        reply = await send(app, b"POST", gate_path(app, callback), gate_auth(), raw)
        assert (reply.status, reply.json()["errcode"]) == (status, errcode)
        if callback in ("user_may_publish_room", "check_username_for_spam"):
            assert f"{callback} is not decided by the SantéGuard gate" in reply.json()["error"]


async def test_the_server_still_works_after_bad_input(app: SanteGuard, no_500: None) -> None:
    await send(app, b"PUT", TXN + b"x", hs_auth(b"\xff"), b"{}")
    await send(app, b"PUT", TXN + b"y", [*hs_auth(), (b"Content-Encoding", b"gzip")], b"{}")
    reply = await send(app, b"PUT", TXN + b"ok", hs_auth(), b'{"events": []}')
    assert (reply.status, reply.json()) == (200, {})
    valid = {"user": "@a:santeguard.test", "room": "!r:santeguard.test", "is_invited": False}
    raw = json.dumps(valid).encode()
    reply = await send(app, b"POST", gate_path(app, "user_may_join_room"), gate_auth(), raw)
    assert reply.status == 200
