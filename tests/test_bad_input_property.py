"""Property-based: random transaction bodies never crash the endpoint or lose a valid one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.app import SanteGuard
from tests.helpers import HS_TOKEN, make_config

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
            if not isinstance(ev.get(key), str) or not ev[key]:
                return False
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
