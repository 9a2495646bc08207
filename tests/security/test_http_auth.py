"""Every HTTP endpoint refuses a wrong, missing or placeholder token, before doing anything.

The routes are read from the running server's aiohttp router, so a route added later is
covered (or fails here until it is classified): every route under the appservice prefix
wants the homeserver token, every route under the gate's path the gate token, and only
``/health``, ``/ready`` and ``/metrics`` are public, by design (docs/install.md: served
without authentication on the listening port, loopback by default). Non-UTF-8 tokens are
tests/spine/test_http_bad_input.py's.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from bridge.app import SanteGuard
from bridge.config import PLACEHOLDER_TOKENS
from bridge.spine.http import APP_PREFIX
from tests.helpers import AS_TOKEN, GATE_TOKEN, HS_TOKEN, make_config, message_event

PUBLIC = frozenset({"/health", "/ready", "/metrics"})
# What a path parameter is replaced with: plausible values, so that only the token
# stands between the request and its processing.
PARAMS = {
    "txn_id": "sec-1",
    "user_id": "@santeguard_ghost:santeguard.test",
    "alias": "#room:santeguard.test",
    "callback": "user_may_invite",
}
ROOM = "!sec:santeguard.test"


@pytest.fixture(scope="module")
async def app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SanteGuard]:
    work = tmp_path_factory.mktemp("auth")
    cfg = make_config(f"sqlite:///{work / 'sg.db'}", encryption={"store_path": str(work / "c")})
    santeguard = SanteGuard(cfg)
    await santeguard.start()
    try:
        yield santeguard
    finally:
        await santeguard.stop()


def routes(app: SanteGuard) -> list[tuple[str, str]]:
    """(method, path template) of every route the running server serves."""
    runner = app._runner  # the server as started, not a copy of its routes
    assert runner is not None
    router = runner.app.router
    found = []
    for route in router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        assert isinstance(path, str), info
        found.append((route.method, path))
    return found


def concrete(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: quote(PARAMS[m.group(1)], safe="@:!"), template)


def body_for(template: str) -> dict[str, Any]:
    if "/transactions/" in template:
        return {"events": [message_event(ROOM, 1, body="unauthenticated transaction")]}
    return {"inviter": "@a:santeguard.test", "invitee": "@b:santeguard.test", "room_id": ROOM}


def auth_variants(
    valid: str, other_tokens: list[str], *, gate: bool
) -> list[tuple[str, dict[str, str], str]]:
    """(label, headers, query) of every wrong way to present ``valid``."""
    variants: list[tuple[str, dict[str, str], str]] = [
        ("missing", {}, ""),
        ("empty bearer", {"Authorization": "Bearer "}, ""),
        ("empty header", {"Authorization": ""}, ""),
        ("scheme only", {"Authorization": "Bearer"}, ""),
        ("wrong token", {"Authorization": "Bearer " + valid[::-1]}, ""),
        ("prefix of the token", {"Authorization": "Bearer " + valid[:-1]}, ""),
        ("token and more", {"Authorization": "Bearer " + valid + "x"}, ""),
        ("basic scheme", {"Authorization": "Basic " + valid}, ""),
        ("token scheme", {"Authorization": "Token " + valid}, ""),
        ("no scheme", {"Authorization": valid}, ""),
        ("wrong query", {}, "access_token=" + valid[::-1]),
        ("empty query", {}, "access_token="),
    ]
    if gate:  # Synapse's modules send a header; a token in the query is no key there
        variants.append(("right token in query only", {}, "access_token=" + valid))
    else:  # the homeserver may send both: both must be right
        variants.append(
            ("right header, wrong query", {"Authorization": "Bearer " + valid}, "access_token=x")
        )
    for placeholder in sorted(PLACEHOLDER_TOKENS):
        variants.append(
            ("placeholder " + placeholder, {"Authorization": "Bearer " + placeholder}, "")
        )
        variants.append(
            ("placeholder query " + placeholder, {}, "access_token=" + quote(placeholder))
        )
    for other in other_tokens:  # a token for another purpose is no key here
        variants.append(("another token", {"Authorization": "Bearer " + other}, ""))
        variants.append(("another token in query", {}, "access_token=" + other))
    return variants


def classify(app: SanteGuard, path: str) -> str:
    if path in PUBLIC:
        return "public"
    if path.startswith(APP_PREFIX + "/"):
        return "homeserver"
    if path.startswith(app.config.antispam.path.rstrip("/") + "/"):
        return "gate"
    return "unclassified"


def test_every_route_is_classified(app: SanteGuard) -> None:
    found = routes(app)
    unclassified = [(m, p) for m, p in found if classify(app, p) == "unclassified"]
    assert unclassified == [], "a new endpoint: say which token it wants (or that it is public)"
    kinds = {classify(app, p) for _, p in found}
    assert kinds == {"public", "homeserver", "gate"}
    assert {p for _, p in found if p in PUBLIC} == PUBLIC


async def test_wrong_missing_or_placeholder_tokens_are_refused_everywhere(
    app: SanteGuard, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="santeguard.http")
    base = app.config.appservice.address
    checked = 0
    async with aiohttp.ClientSession() as session:
        for method, template in routes(app):
            kind = classify(app, template)
            if kind == "public":
                continue
            valid, others = (
                (HS_TOKEN, [GATE_TOKEN, AS_TOKEN])
                if kind == "homeserver"
                else (GATE_TOKEN, [HS_TOKEN, AS_TOKEN])
            )
            path = concrete(template)
            data = json.dumps(body_for(template)) if method in ("PUT", "POST") else None
            for label, headers, query in auth_variants(valid, others, gate=kind == "gate"):
                url = f"{base}{path}" + (f"?{query}" if query else "")
                async with session.request(
                    method, url, headers={**headers, "Content-Type": "application/json"}, data=data
                ) as resp:
                    where = f"{method} {template} ({label})"
                    assert resp.status in (401, 403), where
                    if method != "HEAD":
                        reply = await resp.json()
                        expected = "M_UNAUTHORIZED" if resp.status == 401 else "M_FORBIDDEN"
                        assert reply["errcode"] == expected, where
                        assert valid not in json.dumps(reply), where
                    checked += 1
    assert checked > 150
    # Nothing was processed: no transaction stored, no gate decision, no server error.
    assert await app.db.fetchval("SELECT COUNT(*) FROM txn") == 0
    metrics = app.metrics.render().decode()
    assert "santeguard_antispam_requests_total{" not in metrics
    assert 'santeguard_transactions_total{outcome="stored"}' not in metrics
    assert [r.getMessage() for r in caplog.records if r.name == "santeguard.http"] == []


async def test_the_right_token_does_pass(app: SanteGuard) -> None:
    """The refusals above are about the token: the same requests, well signed, are served."""
    base = app.config.appservice.address
    async with aiohttp.ClientSession() as session:
        for method, template in routes(app):
            kind = classify(app, template)
            if kind == "public" or method == "HEAD":
                continue
            token = HS_TOKEN if kind == "homeserver" else GATE_TOKEN
            data = json.dumps(body_for(template)) if method in ("PUT", "POST") else None
            async with session.request(
                method,
                f"{base}{concrete(template)}",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                data=data,
            ) as resp:
                where = f"{method} {template}"
                assert resp.status != 401 and resp.status < 500, where
                if resp.status == 403:  # a gate decision may refuse; never the token
                    assert "token" not in (await resp.json())["error"], where
    assert await app.db.fetchval("SELECT COUNT(*) FROM txn") == 1


async def test_health_ready_and_metrics_are_public_and_carry_no_secret(app: SanteGuard) -> None:
    base = app.config.appservice.address
    async with aiohttp.ClientSession() as session:
        for path in sorted(PUBLIC):
            async with session.get(base + path) as resp:
                assert resp.status in (200, 503), path  # /ready: 503 without a homeserver
                text = await resp.text()
            for secret in (HS_TOKEN, AS_TOKEN, GATE_TOKEN):
                assert secret not in text, path
