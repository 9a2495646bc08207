"""Reading stored transactions back gives the event loop back while it parses: a batch
of 50 production bodies is 4-10 ms of JSON, and an ack (or the gate's answer) must not
wait behind it. Measured under ingest before the change: 17 reads of ~10 ms each were
the largest stalls of the loop."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
from mautrix.util.async_db import Database

from bridge.spine import queue as queue_module
from bridge.spine.queue import EventQueueStore
from tests.helpers import message_event


async def test_parsing_a_read_back_batch_yields_to_the_loop(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EventQueueStore(db)
    await store.open()
    try:
        expected = []
        for t in range(30):
            events = [message_event(f"!r{t % 3}:x", t * 100 + i) for i in range(40)]
            seq = await store.store_transaction(
                f"y{t}", json.dumps({"events": events}).encode(), len(events)
            )
            expected.append((seq, [ev["event_id"] for ev in events]))
        # Every body its own slice: the loop runs between any two.
        monkeypatch.setattr(queue_module, "PARSE_SLICE_S", 0.0)
        ticks = 0
        reading = True

        async def ticker() -> None:
            nonlocal ticks
            while reading:
                ticks += 1
                await asyncio.sleep(0)

        at_parse: list[int] = []
        parse = queue_module._events_or_none

        def watched(seq: int, body: bytes, event_count: int) -> list[dict[str, object]]:
            at_parse.append(ticks)  # how often the loop had turned when this body began
            return parse(seq, body, event_count)

        monkeypatch.setattr(queue_module, "_events_or_none", watched)
        tick = asyncio.create_task(ticker())
        batch = await store.pending(0, limit=50)
        reading = False
        await tick
        assert [(t.seq, [ev["event_id"] for ev in t.events]) for t in batch] == expected
        assert len(at_parse) == 30
        # The loop turned between any two bodies: no batch is parsed in one stretch.
        assert all(b > a for a, b in itertools.pairwise(at_parse))
    finally:
        await store.close()
