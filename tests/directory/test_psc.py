"""psc_idnps against a local server imitating Synapse's admin user endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.identity.sources.psc import PscError, psc_idnps

TOKEN = "syt_admin_5ecret_token"

USERS: dict[str, Any] = {
    "@dr.exemple:example.org": [{"auth_provider": "oidc-psc", "external_id": "810999990012"}],
    "@claire:example.org": [
        {"auth_provider": "oidc-google", "external_id": "123"},
        {"auth_provider": "psc", "external_id": " 10999990020 "},  # RPPS form, padded
    ],
    "@adeli:example.org": [{"auth_provider": "oidc-psc", "external_id": "0759399017"}],
    "@google:example.org": [{"auth_provider": "oidc-google", "external_id": "810999990012"}],
    "@nobody:example.org": [],
    "@garbled:example.org": [{"auth_provider": "oidc-psc", "external_id": "f:550e8400-e29b"}],
    "@twice:example.org": [
        {"auth_provider": "oidc-psc", "external_id": "810999990012"},
        {"auth_provider": "oidc-psc", "external_id": "810999990020"},
    ],
    "@custom:example.org": [{"auth_provider": "oidc-prosante", "external_id": "810999990012"}],
    "@shapes:example.org": ["x", {"auth_provider": "oidc-psc", "external_id": 810999990012}],
}


@pytest.fixture
async def synapse() -> AsyncIterator[tuple[TestServer, list[str]]]:
    seen: list[str] = []

    async def user(request: web.Request) -> web.StreamResponse:
        user_id = request.match_info["user_id"]
        seen.append(user_id)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"errcode": "M_UNKNOWN_TOKEN"}, status=401)
        if user_id == "@broken:example.org":
            return web.Response(text="<html>", content_type="text/html")
        if user_id == "@notalist:example.org":
            return web.json_response({"name": user_id, "external_ids": "oidc-psc"})
        if user_id not in USERS:
            return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)
        return web.json_response({"name": user_id, "admin": False, "external_ids": USERS[user_id]})

    app = web.Application()
    app.router.add_get("/_synapse/admin/v2/users/{user_id}", user)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server, seen
    finally:
        await server.close()


async def lookup(server: TestServer, user_id: str, **kw: Any) -> str | None:
    async with aiohttp.ClientSession() as session:
        return await psc_idnps(
            session, str(server.make_url("/")), kw.pop("token", TOKEN), user_id, **kw
        )


@pytest.mark.parametrize(
    ("user_id", "expected"),
    [
        ("@dr.exemple:example.org", "810999990012"),
        ("@claire:example.org", "810999990020"),
        ("@adeli:example.org", "0759399017"),
        ("@google:example.org", None),
        ("@nobody:example.org", None),
        ("@shapes:example.org", None),
        ("@stranger:example.org", None),  # 404
    ],
)
async def test_psc_idnps(
    synapse: tuple[TestServer, list[str]], user_id: str, expected: str | None
) -> None:
    server, seen = synapse
    assert await lookup(server, user_id) == expected
    assert seen == [user_id]  # the user id reached the server intact


async def test_custom_idp_id(synapse: tuple[TestServer, list[str]]) -> None:
    server, _ = synapse
    assert await lookup(server, "@custom:example.org") is None
    assert await lookup(server, "@custom:example.org", idp_id="prosante") == "810999990012"


@pytest.mark.parametrize(
    ("user_id", "reason"),
    [
        ("@garbled:example.org", "bad_external_id"),
        ("@twice:example.org", "ambiguous"),
        ("@broken:example.org", "bad_json"),
        ("@notalist:example.org", "bad_answer"),
    ],
)
async def test_errors(synapse: tuple[TestServer, list[str]], user_id: str, reason: str) -> None:
    server, _ = synapse
    with pytest.raises(PscError) as e:
        await lookup(server, user_id)
    assert e.value.reason == reason
    assert TOKEN not in str(e.value)


async def test_token_refused_and_unreachable(synapse: tuple[TestServer, list[str]]) -> None:
    server, _ = synapse
    with pytest.raises(PscError) as e:
        await lookup(server, "@dr.exemple:example.org", token="wrong")
    assert e.value.reason == "auth" and "wrong" not in str(e.value)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(PscError) as e:
            await psc_idnps(session, "http://127.0.0.1:9", TOKEN, "@a:b", timeout_s=2)
    assert e.value.reason == "unreachable"


async def test_body_size_cap(synapse: tuple[TestServer, list[str]]) -> None:
    server, _ = synapse
    with pytest.raises(PscError) as e:
        await lookup(server, "@dr.exemple:example.org", max_body_bytes=20)
    assert e.value.reason == "too_large"
