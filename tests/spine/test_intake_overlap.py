"""PostgreSQL's intake commits a transaction while its body is parsed (``begin_store``).

The insert goes out before the parse, its row saying ``UNCOUNTED`` until the count is
written a moment later; a body refused meanwhile loses its row before the 400, and one
whose row cannot be deleted gets a 503. SQLite journals the body before the parse
instead (``bridge.spine.journaled``) and inserts the row, counted, after it. Against the
real databases.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bridge.app import SanteGuard
from bridge.spine.pending import UNCOUNTED
from tests.helpers import HS_TOKEN, make_config, message_event


@pytest.fixture
async def app(db_uri: str) -> AsyncIterator[SanteGuard]:
    sg = SanteGuard(make_config(db_uri))
    sg.routes.on("m.room.message", _handled)
    await sg.start()
    try:
        yield sg
    finally:
        await sg.stop()


async def _handled(event: dict[str, Any]) -> bool:
    return True


async def _put(app: SanteGuard, txn_id: str, raw: bytes) -> tuple[int, dict[str, Any]]:
    url = f"{app.config.appservice.address}/_matrix/app/v1/transactions/{txn_id}"
    async with (
        aiohttp.ClientSession() as s,
        s.put(url, data=raw, headers={"Authorization": f"Bearer {HS_TOKEN}"}) as r,
    ):
        return r.status, await r.json()


def _body(*events: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(events)}).encode()


async def _count_of(app: SanteGuard, txn_id: str) -> int | None:
    value = await app.db.fetchval("SELECT event_count FROM txn WHERE txn_id = $1", txn_id)
    return None if value is None else int(value)


async def _until_counted(app: SanteGuard, txn_id: str, timeout: float = 10) -> int | None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (count := await _count_of(app, txn_id)) == UNCOUNTED:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.02)
    return count


@pytest.fixture
def spied(app: SanteGuard, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """(txn_id, whether an insert began) for each ``begin_store`` call."""
    calls: list[tuple[str, bool]] = []
    real = app.queue.begin_store

    async def spy(txn_id: str, body: bytes, *, notify: bool = False) -> object:
        pending = await real(txn_id, body, notify=notify)
        calls.append((txn_id, pending is not None))
        return pending

    monkeypatch.setattr(app.queue, "begin_store", spy)
    return calls


async def test_postgres_inserts_before_parsing_and_writes_the_count_after(
    app: SanteGuard, spied: list[tuple[str, bool]], db_uri: str
) -> None:
    events = [message_event("!r:x", i) for i in range(3)]
    assert await _put(app, "t1", _body(*events)) == (200, {})
    assert spied == [("t1", True)]  # SQLite: journaled before the parse
    # The gauge counts it whether or not its count is written yet.
    assert await app.queue.depth() in (0, 3)  # 0 once handled
    assert await _until_counted(app, "t1") == 3


async def test_depth_counts_a_row_whose_count_was_never_written(
    app: SanteGuard, db_uri: str
) -> None:
    """As after a crash between the commit and the count's write (or a row another
    replica stored a moment ago): the body is read."""
    if app.dispatcher is not None:
        await app.dispatcher.stop()  # the row must stay pending while we look
    body = _body(message_event("!r:x", 1), message_event("!r:x", 2))
    await app.db.execute(
        "INSERT INTO txn (txn_id, body, event_count, received_at) VALUES ($1, $2, $3, $4)",
        "crashed",
        body,
        UNCOUNTED,
        0,
    )
    assert await app.queue.depth() == 2


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b'{"events": {}}', id="events-not-array"),
        pytest.param(b'{"events": [{"type": "m.room.message"}]}', id="event-fields-missing"),
        pytest.param(
            _body({**message_event("!r:x", 1), "room_id": "!\\ud800:x"}).replace(
                b"\\\\ud800", b"\\ud800"
            ),
            id="lone-surrogate-room",
        ),
    ],
)
async def test_a_refused_body_leaves_no_row(app: SanteGuard, raw: bytes) -> None:
    status, body = await _put(app, "refused", raw)
    assert status == 400, body
    assert await app.db.fetchval("SELECT COUNT(*) FROM txn WHERE txn_id = 'refused'") == 0


async def test_a_refused_replay_keeps_the_stored_transaction(app: SanteGuard) -> None:
    """The txnId is stored already: the refused body inserted nothing, and what was
    stored under it (acked before) stays, to be handled once."""
    good = _body(message_event("!r:x", 1))
    assert (await _put(app, "same", good))[0] == 200
    assert (await _put(app, "same", b'{"events": 3}'))[0] == 400
    assert await app.db.fetchval("SELECT body FROM txn WHERE txn_id = 'same'") == good


async def test_a_refusal_whose_row_cannot_be_deleted_is_a_503(
    app: SanteGuard, db_uri: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Stored and not known to be gone: not refused; the homeserver sends it again."""
    if db_uri.startswith("sqlite"):
        pytest.skip("SQLite parses before it inserts: nothing to delete")

    async def unreachable(seq: int) -> None:
        raise ConnectionResetError("database gone (test)")

    monkeypatch.setattr(app.queue, "drop", unreachable)
    with caplog.at_level(logging.WARNING, logger="santeguard.http"):
        status, body = await _put(app, "undeletable", b'{"events": "no"}')
    assert (status, body["errcode"]) == (503, "M_UNKNOWN")
    assert any("Could not withdraw" in r.getMessage() for r in caplog.records)


async def test_counts_are_written_again_after_a_failure(
    app: SanteGuard, db_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db_uri.startswith("sqlite"):
        pytest.skip("SQLite writes the count with the row")
    real = app.queue.counts.write
    failures = [ConnectionResetError("database gone (test)")]

    async def flaky() -> None:
        if failures:
            raise failures.pop()
        await real()

    monkeypatch.setattr(app.queue.counts, "write", flaky)
    assert (await _put(app, "flaky", _body(message_event("!r:x", 1))))[0] == 200
    assert await _until_counted(app, "flaky") == 1
    assert not failures


_REFUSED_BODIES = [
    pytest.param(b"{not json", id="not-json"),
    pytest.param(b'{"events": [{"type": "m.room.message"}]}', id="event-fields-missing"),
    pytest.param(b'{"events": [' * 100_000 + b"]" * 100_000 + b"}", id="too-deep"),
]


@pytest.mark.parametrize("raw", _REFUSED_BODIES)
@pytest.mark.parametrize("cached", [False, True], ids=["read", "cached-read"])
async def test_a_row_read_back_before_its_refusal_hands_over_nothing(
    app: SanteGuard, raw: bytes, cached: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Between its commit and its deletion (or for good, after a crash in between), a
    refused body's row is visible: reading it back hands over no event, quietly."""
    if app.dispatcher is not None:
        await app.dispatcher.stop()
    if cached:
        app.queue.remember(10**9, [])  # a held body makes PostgreSQL's read use the cache
    good = _body(message_event("!r:x", 1))
    for txn_id, body in (("before", good), ("refused", raw), ("after", good)):
        await app.db.execute(
            "INSERT INTO txn (txn_id, body, event_count, received_at) VALUES ($1, $2, $3, 0)",
            txn_id,
            body,
            UNCOUNTED,
        )
    with caplog.at_level(logging.INFO, logger="santeguard.queue"):
        read = await app.queue.pending(0)
    assert [len(t.events) for t in read] == [1, 0, 1]
    assert read[0].events[0]["event_id"] == message_event("!r:x", 1)["event_id"]
    queue_logs = [r for r in caplog.records if r.name == "santeguard.queue"]
    assert [r.levelno for r in queue_logs] == [logging.INFO]
    assert any("refused at intake" in r.getMessage() for r in caplog.records)
    assert await app.queue.depth() == 2


async def test_a_row_deleted_between_the_two_reads_hands_over_nothing(
    app: SanteGuard, db_uri: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL's cached read lists the sequence numbers, then reads the bodies it does
    not hold: a refused row withdrawn in between is simply gone."""
    if db_uri.startswith("sqlite"):
        pytest.skip("SQLite reads rows and bodies in one statement")
    if app.dispatcher is not None:
        await app.dispatcher.stop()
    app.queue.remember(10**9, [])
    seq = await app.queue.store_transaction("gone", b"{not json", UNCOUNTED)
    assert seq is not None
    real_fetch = app.db.fetch

    async def fetch_then_withdraw(query: str, *args: Any) -> Any:
        rows = await real_fetch(query, *args)
        if "ANY" in query:
            return [r for r in rows if r["seq"] != seq]  # deleted just before this read
        return rows

    monkeypatch.setattr(app.db, "fetch", fetch_then_withdraw)
    with caplog.at_level(logging.WARNING, logger="santeguard.queue"):
        read = await app.queue.pending(0)
    assert [(t.seq, t.events) for t in read] == [(seq, [])]
    assert not [r for r in caplog.records if r.name == "santeguard.queue"]
