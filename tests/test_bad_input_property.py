"""Property-based: random bodies never crash an endpoint, lose a valid transaction or get
the gate to allow what it cannot read."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.app import SanteGuard
from tests.helpers import GATE_TOKEN, HS_TOKEN, make_config

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(st.text(max_size=300), st.integers(), st.none()),
        "event_id": st.one_of(st.text(max_size=20), st.integers()),
        "room_id": st.one_of(st.text(max_size=20), st.lists(st.integers(), max_size=2)),
        "sender": st.one_of(st.text(max_size=20), st.booleans()),
        "content": json_values,
    },
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"events": st.lists(event_like, max_size=5)}, optional={"to_device": json_values}
    ),
)
raw_bytes = st.binary(max_size=200)


@pytest.fixture
async def app(db_uri: str) -> AsyncIterator[SanteGuard]:
    instance = SanteGuard(make_config(db_uri))
    await instance.start()
    yield instance
    await instance.stop()


def _is_valid(body: Any) -> bool:
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        return False
    if "to_device" in body and not isinstance(body["to_device"], list):
        return False
    for ev in body["events"]:
        if not isinstance(ev, dict):
            return False
        for key in ("type", "event_id", "room_id", "sender"):
            if not isinstance(ev.get(key), str) or not ev[key] or "\x00" in ev[key]:
                return False  # a NUL is refused like a lone surrogate: no database stores it
        if len(ev["type"]) > 255 or ("content" in ev and not isinstance(ev["content"], dict)):
            return False
    return True


async def test_random_bodies_get_200_or_precise_4xx(app: SanteGuard) -> None:
    base = app.config.appservice.address
    counter = iter(range(10**9))

    async with aiohttp.ClientSession() as session:

        async def send(data: bytes) -> tuple[int, dict[str, Any]]:
            async with session.put(
                f"{base}/_matrix/app/v1/transactions/p{next(counter)}",
                data=data,
                headers={"Authorization": f"Bearer {HS_TOKEN}"},
            ) as resp:
                return resp.status, await resp.json()

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(body=bodies)
        def check_json(body: Any) -> None:
            status, reply = loop_run(send(json.dumps(body).encode()))
            if _is_valid(body):
                assert status == 200, reply
            else:
                assert status == 400, reply
                assert reply["errcode"] in {"M_BAD_JSON", "M_NOT_JSON"}
                assert reply["error"]

        @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
        @given(data=raw_bytes)
        def check_raw(data: bytes) -> None:
            status, reply = loop_run(send(data))
            assert status in (200, 400), reply
            if status == 400:
                assert reply["errcode"] in {"M_BAD_JSON", "M_NOT_JSON"}

        import asyncio
        import concurrent.futures

        loop = asyncio.get_running_loop()

        def loop_run(coro: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            await loop.run_in_executor(pool, check_json)
            await loop.run_in_executor(pool, check_raw)
    assert 'outcome="stored"' in app.metrics.render().decode()


# -- the synchronous gate: never "allow" on a payload it cannot read ---------------------

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=6),
    st.just("\ud800"),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def mostly(valid: st.SearchStrategy[Any], junk: st.SearchStrategy[Any] = JUNK) -> Any:
    """``valid`` 7 times in 8, else ``junk``: whole payloads come out valid often enough."""
    return st.integers(0, 7).flatmap(lambda i: junk if i == 0 else valid)


USERS = mostly(
    st.sampled_from(["@a:santeguard.test", "@b:other.example", "@santeguard:santeguard.test"])
)
ROOMS = mostly(st.sampled_from(["!r:santeguard.test", "!v12roomid"]))
TEXTS = mostly(st.sampled_from(["m.room.message", "m.room.member", "m.room.create", "x"]))
OPTIONAL_TEXT = mostly(st.one_of(st.none(), st.text(max_size=8)))


def _event_strategy() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "type": TEXTS,
            "event_id": mostly(st.just("$e1")),
            "sender": USERS,
            "content": mostly(st.sampled_from([{"membership": "invite"}, {}]), json_values),
        },
        optional={
            "room_id": ROOMS,  # absent from room version 12 create events
            "state_key": mostly(st.one_of(USERS, st.just(""))),
            "unsigned": json_values,
        },
    )


# Bodies shaped like each callback's, with each field valid or not; plus any JSON at all.
SHAPED: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "user_may_invite": st.fixed_dictionaries(
        {"inviter": USERS, "invitee": USERS}, optional={"room_id": ROOMS}
    ),
    "user_may_join_room": st.fixed_dictionaries(
        {"user": USERS, "room": ROOMS}, optional={"is_invited": mostly(st.booleans())}
    ),
    "user_may_create_room": st.fixed_dictionaries(
        {"user_id": USERS}, optional={"room_config": mostly(st.just({}))}
    ),
    "check_event_for_spam": st.fixed_dictionaries(
        {}, optional={"event": mostly(_event_strategy())}
    ),
    "federated_user_may_invite": st.fixed_dictionaries({"event": mostly(_event_strategy())}),
    "check_login_for_spam": st.fixed_dictionaries(
        {"user_id": USERS},
        optional={
            "device_id": OPTIONAL_TEXT,
            "initial_display_name": OPTIONAL_TEXT,
            "request_info": mostly(st.just([["ua", "10.0.0.1"]])),
            "auth_provider_id": OPTIONAL_TEXT,
        },
    ),
}
CALLBACKS = mostly(
    st.sampled_from(
        [
            *sorted(SHAPED),
            "ping",
            "user_may_send_3pid_invite",
            "user_may_create_room_alias",
            "user_may_publish_room",
            "check_username_for_spam",
            "accept_make_join",
        ]
    ),
    st.text(min_size=1, max_size=30),
)


def _utf8(v: Any) -> bool:
    """Storable text: valid UTF-8 and no NUL (which no database text column takes)."""
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in v


def _text(v: Any, sigil: str = "") -> bool:
    return isinstance(v, str) and bool(v) and v.startswith(sigil) and _utf8(v)


def _user(v: Any) -> bool:
    return _text(v, "@") and ":" in v[2:]


def _optional_text(body: dict[str, Any], key: str) -> bool:
    v = body.get(key)
    return v is None or (isinstance(v, str) and _utf8(v))


def _event_ok(ev: Any, invite: bool) -> bool:
    if not isinstance(ev, dict):
        return False
    room_id_ok = _text(ev.get("room_id"), "!") or (
        "room_id" not in ev and ev.get("type") == "m.room.create" and not invite
    )
    if not (
        _text(ev.get("type"))
        and _text(ev.get("event_id"), "$")
        and room_id_ok
        and _user(ev.get("sender"))
        and isinstance(ev.get("content"), dict)
    ):
        return False
    if invite:
        return (
            ev["type"] == "m.room.member"
            and _user(ev.get("state_key"))
            and ev["content"].get("membership") == "invite"
        )
    return "state_key" not in ev or (isinstance(ev["state_key"], str) and _utf8(ev["state_key"]))


def antispam_valid(callback: str, body: Any) -> bool:
    """The contract, written again independently of bridge.core.antispam."""
    if not isinstance(body, dict):
        return False
    if callback == "ping":
        return True
    if callback == "user_may_invite":
        return (
            _user(body.get("inviter"))
            and _user(body.get("invitee"))
            and (_text(body.get("room_id"), "!"))
        )
    if callback == "user_may_join_room":
        return (
            _user(body.get("user"))
            and _text(body.get("room"), "!")
            and isinstance(body.get("is_invited", False), bool)
        )
    if callback == "user_may_create_room":
        return _user(body.get("user_id")) and isinstance(body.get("room_config", {}), dict)
    if callback == "check_event_for_spam":
        return _event_ok(body.get("event"), invite=False)
    if callback == "federated_user_may_invite":
        return _event_ok(body.get("event"), invite=True)
    if callback == "check_login_for_spam":
        return (
            _user(body.get("user_id"))
            and all(
                _optional_text(body, k)
                for k in ("device_id", "initial_display_name", "auth_provider_id")
            )
            and isinstance(body.get("request_info", []), list)
        )
    return False  # not decided by the gate: never allowed


async def test_random_antispam_bodies_are_never_allowed_unless_valid(app: SanteGuard) -> None:
    import asyncio
    import concurrent.futures
    from urllib.parse import quote

    base = f"{app.config.appservice.address}{app.config.antispam.path}"
    seen: dict[str, int] = {"valid": 0, "invalid": 0}

    async with aiohttp.ClientSession() as session:

        async def send(callback: str, data: bytes) -> tuple[int, Any]:
            async with session.post(
                f"{base}/{quote(callback, safe='')}",
                data=data,
                headers={"Authorization": f"Bearer {GATE_TOKEN}"},
            ) as resp:
                return resp.status, await resp.json(content_type=None)

        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            callback = data.draw(CALLBACKS, label="callback")
            shaped = SHAPED.get(callback)
            body = data.draw(
                mostly(shaped, json_values) if shaped is not None else json_values,
                label="body",
            )
            status, reply = loop_run(send(callback, json.dumps(body).encode()))
            assert status < 500, reply
            if antispam_valid(callback, body):
                seen["valid"] += 1
                # Decided by the gate: allowed, or refused with a reason. Never a 400.
                assert status in (200, 403), reply
            else:
                seen["invalid"] += 1
                assert status in (400, 403, 404), reply
                assert reply["errcode"] and reply["error"]

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(callback=st.sampled_from(sorted(SHAPED)), raw=raw_bytes)
        def check_raw(callback: str, raw: bytes) -> None:
            status, reply = loop_run(send(callback, raw))
            assert status < 500, reply
            if 200 <= status < 300:
                assert antispam_valid(callback, json.loads(raw)), raw

        loop = asyncio.get_running_loop()

        def loop_run(coro: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            await loop.run_in_executor(pool, check)
            await loop.run_in_executor(pool, check_raw)
    # Both sides of the property were exercised, not just the refusals.
    assert seen["valid"] >= 50 and seen["invalid"] >= 100, seen
