"""An event whose identifiers hold a lone surrogate is refused at intake, before storage.

``"\\ud800"`` is a valid JSON escape but not encodable as UTF-8; the table of
tests/spine/test_validate_table.py covers every field, this covers the endpoint
(400 ``M_BAD_JSON`` naming the field, nothing stored, nothing handled), on SQLite and
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from bridge.app import SanteGuard
from tests.helpers import HS_TOKEN, make_config


@pytest.fixture
async def app(db_uri: str) -> AsyncIterator[SanteGuard]:
    santeguard = SanteGuard(make_config(db_uri))
    await santeguard.start()
    try:
        yield santeguard
    finally:
        await santeguard.stop()


def _event(field: str, escaped: str) -> bytes:
    fields = {
        "type": '"m.room.message"',
        "event_id": '"$e1"',
        "room_id": '"!r:x"',
        "sender": '"@a:x"',
        "state_key": '""',
    }
    fields[field] = f'"{escaped}"'
    inner = ", ".join(f'"{k}": {v}' for k, v in fields.items())
    return ('{"events": [{' + inner + ', "content": {"body": "hi"}}]}').encode()


@pytest.mark.parametrize("field", ["room_id", "event_id", "sender", "type", "state_key"])
async def test_lone_surrogate_identifier_refused_before_storage(
    app: SanteGuard, field: str
) -> None:
    raw = _event(field, "x\\ud800y")
    async with (
        aiohttp.ClientSession() as s,
        s.put(
            f"{app.config.appservice.address}/_matrix/app/v1/transactions/surrogate",
            data=raw,
            headers={"Authorization": f"Bearer {HS_TOKEN}", "Content-Type": "application/json"},
        ) as resp,
    ):
        status, body = resp.status, await resp.json()
    assert status == 400
    assert body["errcode"] == "M_BAD_JSON"
    assert f"events[0].{field} is not valid UTF-8" in body["error"]
    assert await app.db.fetchval("SELECT COUNT(*) FROM txn") == 0
    assert 'reason="event_bad_string"' in app.metrics.render().decode()
