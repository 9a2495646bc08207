"""After an outage, what waited at the homeserver reaches SantéGuard at once (the ping).

SantéGuard (the child process) is stopped; the practitioner's client keeps sending (Synapse
accepts: messages are not asked of the gate in this lab, tests/reliability/lab.py) and
Synapse, failing to deliver, backs off: it retries 2, 6, 14, 30 s after the first failure
(then every 2^n s up to 512). SantéGuard is started again OUTAGE seconds after the
first failed delivery, between two retries. Without the ping it would wait for Synapse's
next retry (16 s away at worst in the short run: 30 - 15 + start-up); with it, the
restarted process's homeserver watch pings at its first probe and Synapse retries at once
(``force_retry``, synapse/rest/client/appservice_ping.py).

Measured: from the moment the new process answers ``/health`` (listening) to the
``received_at`` of the last stored transaction holding an outage event (SantéGuard's
database). Printed; the short test asserts only a generous bound (10 s), which the 14 s
of backoff left without the ping would exceed. Also: every outage event stored exactly
once, and Synapse owes nothing afterwards.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import pytest

from .conftest import LONG
from .lab import Child, Lab, appservice_up, figure, send, undelivered, until

pytestmark = pytest.mark.synapse

OUTAGE = 20.0 if LONG else 15.0  # seconds from the first failed delivery to the restart
DURING = 200 if LONG else 40  # events sent during the outage
BOUND = 10.0  # generous: the goal is < 2 s, the backoff without a ping is 14 s here
TAG = "outage latency"


async def _down(lab: Lab) -> bool:
    return not await appservice_up(lab)


async def test_events_sent_during_an_outage_arrive_right_after_the_restart(
    lab: Lab, tmp_path: Path
) -> None:
    rng = random.Random(0)
    child = Child(lab, tmp_path)
    child.spawn()
    await child.listening()
    try:
        # A first event delivered: Synapse holds the appservice up.
        warm = await send(lab, 0, lab.rooms[0], False, "outage-warm")
        await until(lambda: _stored_after(lab, 0, {warm}), "the first event")
        before = int(await lab.db.fetchval("SELECT COALESCE(MAX(seq), 0) FROM txn") or 0)

        assert await child.terminate() == 0
        first = await send(lab, 0, rng.choice(lab.rooms), False, "outage")
        outage_ids = {first}
        await until(lambda: _down(lab), "Synapse to fail a delivery", timeout=30)
        failed_at = time.monotonic()
        for i in range(1, DURING):
            outage_ids.add(await send(lab, i, rng.choice(lab.rooms), False, "outage"))
            await asyncio.sleep(max(0.0, (OUTAGE - 2.0) / DURING - 0.01))
        await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - failed_at)))

        child.spawn()
        await child.listening()
        listening_wall = time.time()
        await until(lambda: _stored_after(lab, before, outage_ids), "the outage's events")
        rows = await lab.db.fetch(
            "SELECT body, received_at FROM txn WHERE seq > $1 ORDER BY seq", before
        )
        arrivals = [int(r["received_at"]) for r in rows if _ids(r["body"]) & outage_ids]
        delay = max(arrivals) / 1000 - listening_wall
        first_delay = min(arrivals) / 1000 - listening_wall
        counts = [sum(1 for r in rows if e in _ids(r["body"])) for e in outage_ids]
        pings = await child.metric("santeguard_appservice_pings_total", outcome="ok")
        assert await child.terminate() == 0
    finally:
        await child.kill()
    never = await undelivered(lab)
    figure(TAG, "outage (first failed delivery to restart)", f"{OUTAGE:.0f} s")
    figure(TAG, "events sent during the outage", len(outage_ids))
    figure(TAG, "transactions that held them", len(arrivals))
    figure(TAG, "listening to first outage event stored", f"{first_delay:.2f} s")
    figure(TAG, "listening to last outage event stored", f"{delay:.2f} s")
    figure(TAG, "successful appservice pings", pings)
    figure(TAG, "never delivered (transactions, events)", never)
    assert all(n == 1 for n in counts)  # each stored once
    assert never == (0, 0)
    assert pings >= 1
    assert delay < BOUND


def _ids(body: bytes) -> set[str]:
    return {
        e["event_id"]
        for e in json.loads(bytes(body)).get("events") or []
        if isinstance(e, dict) and isinstance(e.get("event_id"), str)
    }


async def _stored_after(lab: Lab, seq: int, ids: set[str]) -> bool:
    rows = await lab.db.fetch("SELECT body FROM txn WHERE seq > $1", seq)
    seen: set[str] = set()
    for row in rows:
        seen |= _ids(row["body"])
    return ids <= seen
