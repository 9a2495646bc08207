"""The event ledger on SQLite and PostgreSQL: batched intake, proof queries, pruning."""

from __future__ import annotations

from typing import Any

from mautrix.util.async_db import Database

from bridge.core.ports import EPHEMERAL
from bridge.retention.ledger import EventLedger, LedgerSubscriber, row_of
from bridge.spine.routes import EventRoutes

BOT, ENFORCER = "@santeguard:t.test", "@santeguard_control:t.test"
OWN = frozenset({BOT, ENFORCER})


def ev(
    event_id: str, room: str, ts: int, *, sender: str = "@doc:t.test", **kw: Any
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "room_id": room,
        "type": kw.pop("type", "m.room.encrypted"),
        "sender": sender,
        "origin_server_ts": ts,
        "content": {"ciphertext": "SECRET-CONTENT"},
        **kw,
    }


def test_row_of_keeps_no_content_and_skips_pseudo_events() -> None:
    row = row_of(ev("$a", "!r", 5), OWN, 9)
    assert row == ("$a", "!r", "m.room.encrypted", False, False, 5, 9)
    assert "SECRET" not in repr(row)
    state = row_of(
        ev("$s", "!r", 5, type="m.room.member", state_key="@x:t", sender=ENFORCER), OWN, 9
    )
    assert state is not None and state[3] is True and state[4] is True
    assert row_of({**ev("$r", "!r", 5), EPHEMERAL: True}, OWN, 9) is None
    assert row_of({"type": "m.typing", "room_id": "!r"}, OWN, 9) is None
    no_ts = row_of({**ev("$n", "!r", 5), "origin_server_ts": "x"}, OWN, 9)
    assert no_ts is not None and no_ts[5] == 9


async def test_subscriber_sees_events_refused_by_later_guards(db: Database) -> None:
    ledger = EventLedger(db)
    sub = LedgerSubscriber(ledger, OWN)
    routes = EventRoutes(*OWN)
    sub.subscribe(routes)

    async def refuse(event: dict[str, Any]) -> bool:
        return True

    routes.guard("*", refuse)
    for i in range(5):
        await routes.handle(ev(f"$e{i}", "!room", 1000 + i))
    await routes.handle(ev("$e0", "!room", 1000))  # a retry: recorded once
    await routes.handle({**ev("$rcpt", "!room", 1), EPHEMERAL: True})
    await sub.flush()
    assert await ledger.rooms() == ["!room"]
    got = await ledger.candidates("!room", 10_000, 100)
    assert [c.event_id for c in got] == [f"$e{i}" for i in range(5)]
    await sub.close()


async def test_batches_of_many_rooms(db: Database) -> None:
    ledger = EventLedger(db)
    sub = LedgerSubscriber(ledger, OWN, max_batch=7)
    for i in range(200):
        assert await sub.observe(ev(f"$m{i}", f"!r{i % 10}", 1000 + i)) is False
    await sub.flush()
    total = [len(await ledger.candidates(f"!r{k}", 10**9, 1000)) for k in range(10)]
    assert total == [20] * 10


async def test_queries(db: Database) -> None:
    ledger = EventLedger(db)
    rows = [
        row_of(ev("$create", "!a", 100, type="m.room.create", state_key=""), OWN, 1),
        row_of(ev("$m1", "!a", 200), OWN, 1),
        row_of(ev("$m2", "!a", 300), OWN, 1),
        row_of(ev("$notice", "!a", 400, sender=BOT, type="m.room.message"), OWN, 1),
        row_of(ev("$name", "!a", 500, type="m.room.name", state_key=""), OWN, 1),
        row_of(ev("$m3", "!a", 900), OWN, 1),
        row_of(ev("$b1", "!b", 250), OWN, 1),
    ]
    await ledger.record([r for r in rows if r is not None])
    await ledger.record([r for r in rows if r is not None])  # idempotent

    cands = await ledger.candidates("!a", 600, 10)
    assert [c.event_id for c in cands] == ["$m1", "$m2", "$notice"]  # no state, none newer
    assert [c.event_id for c in await ledger.candidates("!a", 600, 2)] == ["$m1", "$m2"]
    newest = await ledger.newest_before("!a", 600)
    assert newest is not None and (newest.event_id, newest.state) == ("$name", True)
    assert await ledger.newest_before("!a", 50) is None

    # Last activity: SantéGuard's own events do not keep a room alive.
    assert await ledger.last_activity("!a") == 900
    await ledger.record([row_of(ev("$late", "!a", 5000, sender=ENFORCER), OWN, 1)])  # type: ignore[list-item]
    assert await ledger.last_activity("!a") == 900
    assert await ledger.last_activity("!none") is None
    assert await ledger.last_activity_by_room() == {"!a": 900, "!b": 250}

    await ledger.mark_purged(["$m1", "$m2"], 10_000)
    await ledger.mark_purged(["$m1"], 99_999)  # the first proof is kept
    assert [c.event_id for c in await ledger.candidates("!a", 600, 10)] == ["$notice"]
    assert await ledger.prune(10_000) == 0
    assert await ledger.prune(10_001) == 2
    assert await ledger.newest_before("!a", 250) is not None  # $create remains

    await ledger.forget_room("!b")
    assert await ledger.rooms() == ["!a"]
