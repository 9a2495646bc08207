"""The outbox records accepted mail in groups while it sends the next, and the "✓ sent"
notices are posted behind it (bench/mail.py measured both as the throughput limits).

Real database (SQLite and PostgreSQL), fake relay and room: what is checked is what gets
recorded and told, never how fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import pytest
from mautrix.util.async_db import Database

from bridge.db.txn import write_transaction
from bridge.mail.outbox import Claimed, OutboxStore, OutboxWorker, QueuedMail
from bridge.mail.policy import RetrySchedule
from bridge.mail.service import MailNotices
from bridge.mail.smtp import SendResult

ROOM = "!room:example.org"
MAILS = 120  # more than one claimed batch (50)


class Relay:
    """Accepts everything (or answers ``outcome``), yielding to the loop like a socket."""

    def __init__(self, outcome: str = "sent") -> None:
        self.outcome = outcome
        self.sent: list[bytes] = []

    async def send(self, raw: bytes, recipients: Sequence[str]) -> SendResult:
        await asyncio.sleep(0)
        self.sent.append(raw)
        if self.outcome == "sent":
            return SendResult("sent", 250, "2.0.0 OK", None)
        return SendResult("temporary", 451, "4.3.0 try later", None)


class Events:
    def __init__(self) -> None:
        self.delivered_ids: list[str] = []
        self.retried: list[str] = []

    async def delivered(self, mail: Claimed, result: SendResult) -> None:
        await asyncio.sleep(0)
        self.delivered_ids.append(mail.event_id)

    async def retrying(self, mail: Claimed, result: SendResult, delay_s: float) -> None:
        self.retried.append(mail.event_id)

    async def failed(self, mail: Claimed, result: SendResult, *, gave_up: bool) -> None:
        raise AssertionError("nothing fails here")


async def _queue(db: Database, n: int) -> list[str]:
    ids = [f"$event{i:04d}" for i in range(n)]
    for i, event_id in enumerate(ids):
        mail = QueuedMail(event_id, ROOM, f"<m{i}@x.test>", "@doc:x", "to@chu.test", b"raw")
        async with write_transaction(db) as conn:
            await OutboxStore.enqueue(conn, mail)
    return ids


async def _statuses(db: Database) -> dict[str, tuple[str, int]]:
    rows = await db.fetch("SELECT event_id, status, attempts FROM mail_outbox")
    return {str(r["event_id"]): (str(r["status"]), int(r["attempts"])) for r in rows}


async def test_every_accepted_mail_is_recorded_once_before_run_due_returns(db: Database) -> None:
    ids = await _queue(db, MAILS)
    store, relay, events = OutboxStore(db), Relay(), Events()
    groups: list[int] = []
    finish_sent = store.finish_sent

    async def counted(done: Sequence[tuple[Claimed, SendResult]]) -> None:
        groups.append(len(done))
        await finish_sent(done)

    store.finish_sent = counted  # type: ignore[method-assign]
    worker = OutboxWorker(store, relay, events, RetrySchedule())

    assert await worker.run_due() is None  # nothing left to retry
    assert len(relay.sent) == MAILS
    assert await _statuses(db) == {event_id: ("sent", 1) for event_id in ids}
    assert sorted(events.delivered_ids) == ids  # each told once
    assert sum(groups) == MAILS
    assert await worker.run_due() is None
    assert len(relay.sent) == MAILS  # nothing sent twice


async def test_a_recording_failure_stops_the_batch_and_leaves_the_rows_pending(
    db: Database,
) -> None:
    await _queue(db, MAILS)
    store, relay, events = OutboxStore(db), Relay(), Events()

    async def broken(done: Sequence[tuple[Claimed, SendResult]]) -> None:
        raise RuntimeError("database gone")

    store.finish_sent = broken  # type: ignore[method-assign]
    worker = OutboxWorker(store, relay, events, RetrySchedule())
    with pytest.raises(RuntimeError, match="database gone"):
        await worker.run_due()
    assert 1 <= len(relay.sent) <= 50  # no further batch was claimed
    assert {s for s, _ in (await _statuses(db)).values()} == {"pending"}
    assert events.delivered_ids == []


async def test_refusals_are_still_recorded_one_by_one(db: Database) -> None:
    ids = await _queue(db, 3)
    store, relay, events = OutboxStore(db), Relay("temporary"), Events()
    worker = OutboxWorker(store, relay, events, RetrySchedule(base_seconds=60))
    delay = await worker.run_due()
    assert delay is not None and delay > 30
    assert await _statuses(db) == {event_id: ("pending", 1) for event_id in ids}
    assert events.retried == ids


class Room:
    """The bot's notices, posted slowly (an encrypted send through a busy homeserver)."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, str | None]] = []
        self.release = asyncio.Event()

    async def send_notice(
        self, room_id: str, text: str, html: str | None = None, *, reply_to: str | None = None
    ) -> str:
        await self.release.wait()
        self.posted.append((text, reply_to))
        return f"$notice{len(self.posted)}"


class Outbox:
    def __init__(self) -> None:
        self.notified: list[tuple[str, str]] = []

    async def set_notified(self, event_id: str, state: str) -> None:
        self.notified.append((event_id, state))


class Text:
    def t(self, key: str, lang: str, /, **params: object) -> str:
        return f"{key} {params.get('to', '')}".strip()


class Languages:
    async def language(self, room_id: str) -> str | None:
        return None


class Audit:
    def __init__(self) -> None:
        self.actions: list[str] = []

    async def record(self, actor: str, action: str, **kwargs: Any) -> None:
        self.actions.append(action)


class Alerts:
    async def alert(self, key: str, /, **params: object) -> None:
        raise AssertionError("no alert expected")


def _claimed(i: int) -> Claimed:
    return Claimed(
        f"$event{i}",
        ROOM,
        f"<m{i}@x.test>",
        "@doc:x",
        "to@chu.test",
        "message",
        b"raw",
        0,
        None,
        "",
    )


async def test_sent_notices_do_not_hold_the_outbox_and_are_posted_in_order() -> None:
    room, outbox, audit = Room(), Outbox(), Audit()
    notices = MailNotices(
        room,
        Text(),
        Languages(),
        cast(OutboxStore, outbox),
        audit,
        Alerts(),
        actor="@santeguard:x",
        default_language="fr",
        notify_sent=True,
    )
    ok = SendResult("sent", 250, "OK", None)
    for i in range(5):
        # Returns although the room cannot be posted to yet: the audit record is written.
        await asyncio.wait_for(notices.delivered(_claimed(i), ok), 5)
    assert audit.actions == ["mail.sent"] * 5 and room.posted == []

    room.release.set()
    await notices.close()
    assert [reply_to for _, reply_to in room.posted] == [f"$event{i}" for i in range(5)]
    assert all(text == "mail.sent to@chu.test" for text, _ in room.posted)
    assert outbox.notified == [(f"$event{i}", "sent") for i in range(5)]


async def test_close_gives_up_on_notices_that_cannot_be_posted() -> None:
    room = Room()  # never released
    notices = MailNotices(
        room,
        Text(),
        Languages(),
        cast(OutboxStore, Outbox()),
        Audit(),
        Alerts(),
        actor="@santeguard:x",
        default_language="fr",
        notify_sent=True,
    )
    await notices.delivered(_claimed(1), SendResult("sent", 250, "OK", None))
    await notices.close(timeout=0.1)  # returns: the notice is dropped, the mail was sent
    assert room.posted == []
