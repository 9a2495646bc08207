"""Events survive SIGKILLs of SantéGuard: each received once, each handled, with a real Synapse.

A verified practitioner's client sends EVENTS events over ROOMS protected, encrypted
rooms (nine in ten ``m.room.encrypted``, one in ten clear text, which the backstop must
redact), 8 at a time, while the `santeguard run` child process is SIGKILLed KILLS times
at random points (seeded: the seed is printed; ``SANTEGUARD_CRASH_SEED`` replays a run)
and restarted after a random pause. Synapse keeps what was not acked and delivers it
again (the restarted process pings it, so without waiting out its backoff).

Counted afterwards from the databases, never from counters the test keeps:

- received: every event Synapse accepted is in exactly one stored transaction of
  SantéGuard's ``txn`` table (0 lost, 0 twice), and Synapse's
  ``application_services_txns`` owes nothing (0 never delivered). Synapse 1.163 can
  strand a transaction created while its recoverer finishes (``lab.Strands``): it is not
  sent until the next failed delivery. The test counts and prints such transactions,
  then causes one more outage (a kill while the client sends) so that Synapse's
  recoverer sends them, and checks that they too arrive once;
- handled: every transaction is marked done, nothing dead-lettered, every clear event
  redacted at Synapse (its ``redactions`` table) and audited (``backstop.redacted``).
  Handling is at least once: a transaction handled but not yet marked done when the
  process dies is handled again after the restart (docs/architecture.md, "Done marks").
  A repeat's redaction and notice carry transaction IDs derived from the event, so
  Synapse returns the first ones: no clear event is redacted twice at Synapse. Its audit
  entry may be written twice; the test checks that this happens only to events whose
  transaction was still pending at a kill (read from the database right after each
  kill), and prints how many. Encrypted events have no effect besides the
  event ledger's insert, which ignores a repeat.

``make test``: 1,000 events, 20 rooms, 2 kills, SQLite. ``SANTEGUARD_LONG_TESTS=1``:
10,000 events, 100 rooms, 5 kills, on SQLite and on PostgreSQL. Figures printed (``-s``).
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import time
from pathlib import Path

import pytest

from .conftest import LONG
from .lab import (
    SENDERS,
    Child,
    Lab,
    Strands,
    accepted,
    appservice_up,
    audited_redactions,
    figure,
    owed,
    pending_event_ids,
    pending_txns,
    redactions,
    send,
    stored,
    undelivered,
    until,
)

pytestmark = pytest.mark.synapse

EVENTS = 10_000 if LONG else 1_000
KILLS = 5 if LONG else 2
CLEAR_EVERY = 10  # one event in ten is clear text: redacted, an effect Synapse records
TAG = "crash events"


async def test_events_survive_sigkills(lab: Lab, tmp_path: Path) -> None:
    seed = int(os.environ.get("SANTEGUARD_CRASH_SEED") or secrets.randbits(32))
    figure(TAG, "seed (SANTEGUARD_CRASH_SEED replays it)", seed)
    rng = random.Random(seed)
    plan = [
        (i, lab.rooms[rng.randrange(len(lab.rooms))], i % CLEAR_EVERY == 0) for i in range(EVENTS)
    ]
    kill_at = sorted(rng.sample(range(EVENTS // 10, EVENTS * 9 // 10), KILLS))
    pauses = [round(rng.uniform(0.2, 3.0), 2) for _ in kill_at]
    figure(TAG, "kills after event #", kill_at)
    figure(TAG, "pauses before restarting (s)", pauses)
    run = f"crash{seed}"
    lab.sent.clear()
    child = Child(lab, tmp_path)
    exposed: set[str] = set()  # events of transactions still pending at a kill
    started = time.monotonic()
    child.spawn()
    await child.listening()
    try:
        queue: asyncio.Queue[tuple[int, str, bool]] = asyncio.Queue()
        for item in plan:
            queue.put_nowait(item)
        sent = 0
        next_kill = asyncio.Event()

        async def sender() -> None:
            nonlocal sent
            while not queue.empty():
                i, room, clear = queue.get_nowait()
                await send(lab, i, room, clear, run)
                sent += 1
                if kill_at and sent >= kill_at[0]:
                    next_kill.set()

        async def killer() -> None:
            for n, pause in enumerate(pauses, 1):
                await next_kill.wait()
                next_kill.clear()
                kill_at.pop(0)
                await child.kill()
                exposed.update(await pending_event_ids(lab))
                figure(TAG, f"kill {n}", f"after {sent} events sent, {len(exposed)} exposed")
                await asyncio.sleep(pause)
                child.spawn()
                await child.listening()

        await asyncio.gather(*(sender() for _ in range(SENDERS)), killer())
        sending = time.monotonic() - started
        figure(TAG, "events sent", f"{len(lab.sent)} in {sending:.1f} s")

        strands = Strands(lab)

        async def settled() -> bool:
            """Everything stored, handled and redacted where clear, except what Synapse
            owes and will not send by itself (stranded)."""
            txns = await owed(lab)
            owed_ids = {e for events in txns.values() for e in events}
            seen = set(await stored(lab))
            if not set(lab.sent) <= seen | owed_ids or await pending_txns(lab):
                return False
            if txns and await strands.stranded() != sorted(txns):
                return False
            clear = {e for e, (_, c) in lab.sent.items() if c and e in seen}
            return set(await redactions(lab, clear)) == clear

        await until(settled, "every event stored and handled, or stranded by Synapse")
        figure(TAG, "settled after sending", f"{time.monotonic() - started - sending:.1f} s")
        left = await strands.stranded()
        events_left = sum(len(v) for k, v in (await owed(lab)).items() if k in left)
        figure(TAG, "stranded by Synapse (transactions / events)", f"{len(left)} / {events_left}")
        if left:
            # Only a failed delivery starts Synapse's recoverer, which sends the oldest
            # owed transaction first: one more outage while the client sends.
            await child.kill()
            exposed.update(await pending_event_ids(lab))
            await send(lab, EVENTS, lab.rooms[0], False, run)
            await until(lambda: _down(lab), "Synapse to see the appservice down")
            child.spawn()
            await child.listening()
            await until(lambda: _delivered(lab), "the stranded transactions after the next outage")
        # A restarted process's first ping can fail at Synapse (its pooled connection to the
        # killed process: "AlreadyCalled", a 502); it is retried a second later, and the
        # deliveries may all be done by then.
        await until(lambda: _pinged(child), "a successful ping of the last process")
        pings = await child.metric("santeguard_appservice_pings_total", outcome="ok")
        assert await child.terminate() == 0
    finally:
        await child.kill()
    clear_ids = {e for e, (_, clear) in lab.sent.items() if clear}
    all_ids = set(lab.sent)

    # Received: Synapse accepted exactly what the client was told, SantéGuard stored each
    # event once, Synapse owes nothing.
    in_synapse = await accepted(lab)
    seen = await stored(lab)
    lost = in_synapse - set(seen)
    twice = {e: n for e, n in seen.items() if e in in_synapse and n > 1}
    never_txns, never_events = await undelivered(lab)
    figure(TAG, "accepted by Synapse / stored by SantéGuard", f"{len(in_synapse)} / {len(seen)}")
    figure(
        TAG, "lost / stored twice / never delivered", f"{len(lost)} / {len(twice)} / {never_events}"
    )
    assert in_synapse == all_ids and len(all_ids) == EVENTS + (1 if left else 0)
    assert not lost and not twice and (never_txns, never_events) == (0, 0)

    # Handled: every transaction done, nothing dead-lettered, each clear event redacted
    # (at Synapse) and audited; repeats only where the transaction was pending at a kill.
    assert await pending_txns(lab) == 0
    assert int(await lab.db.fetchval("SELECT COUNT(*) FROM dead_letter") or 0) == 0
    redacted = await redactions(lab, clear_ids)
    audited = await audited_redactions(lab)
    again = {e for e, n in redacted.items() if n > 1}
    audited_again = {e for e in clear_ids if audited[e] > 1}
    figure(
        TAG,
        "clear events redacted / audited",
        f"{len(redacted)} / {sum(1 for e in clear_ids if audited[e])} of {len(clear_ids)}",
    )
    figure(TAG, "events exposed to a repeat (pending at a kill)", len(exposed))
    figure(
        TAG,
        "clear events handled twice (redactions / audit)",
        f"{len(again)} / {len(audited_again)}",
    )
    figure(TAG, "successful appservice pings of the last process", pings)
    figure(TAG, "SantéGuard runs", child.runs)
    assert set(redacted) == clear_ids and all(audited[e] >= 1 for e in clear_ids)
    # A repeat's redaction carries the first one's transaction ID (derived from the
    # event): Synapse answers with the first redaction, so none is doubled at Synapse.
    assert again == set() and audited_again <= exposed
    assert child.runs == KILLS + 1 + (1 if left else 0) and pings >= 1


async def _pinged(child: Child) -> bool:
    return bool(await child.metric("santeguard_appservice_pings_total", outcome="ok"))


async def _down(lab: Lab) -> bool:
    return not await appservice_up(lab)


async def _delivered(lab: Lab) -> bool:
    """Synapse owes nothing and SantéGuard handled all it stored, redactions included."""
    if (await undelivered(lab))[0] or await pending_txns(lab):
        return False
    seen = set(await stored(lab))
    clear = {e for e, (_, c) in lab.sent.items() if c}
    return set(lab.sent) <= seen and set(await redactions(lab, clear)) == clear
