"""The durable outbox: mail is queued in the database, then delivered until the relay says yes.

A mail is queued with the Matrix event it comes from as its key and a Message-ID derived
from that event, so a replayed event cannot queue it twice and a retry after a crash
sends the same message (the recipient's software drops the repeat by its Message-ID).
Workers claim due rows with a lease (and ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
two replicas never claim the same row); a row leaves ``pending`` only for ``sent`` or
``failed``. 4xx replies and connection or TLS problems are retried with exponential
backoff until ``give_up`` (RFC 5321 §4.5.4.1: days, not minutes); 5xx fails at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from mautrix.util.async_db import Connection, Database, Scheme

from bridge.core.tasks import honour_cancellation
from bridge.db.txn import write_transaction
from bridge.mail.policy import RetrySchedule
from bridge.mail.smtp import SendResult
from bridge.mail.store import now_ms

log = logging.getLogger("santeguard.mail.outbox")

_COLUMNS = (
    "event_id, room_id, message_id, sender, recipient, kind, raw, attempts, first_try_at, "
    "notified, claimed_until"
)


@dataclass(frozen=True, slots=True)
class QueuedMail:
    event_id: str
    room_id: str
    message_id: str
    sender: str
    recipient: str
    raw: bytes
    kind: str = "message"  # message | mdn | xdm


@dataclass(frozen=True, slots=True)
class Claimed:
    event_id: str
    room_id: str
    message_id: str
    sender: str
    recipient: str
    kind: str
    raw: bytes
    attempts: int
    first_try_at: int | None
    notified: str
    claimed_until: int = 0  # the lease this worker holds (``hold`` checks it is still ours)


@dataclass(frozen=True, slots=True)
class QueueEntry:
    event_id: str
    message_id: str
    recipient: str
    status: str
    attempts: int
    last_code: int | None
    last_reply: str | None
    problem: str | None
    due_at: int


class MailSender(Protocol):
    async def send(self, raw: bytes, recipients: Sequence[str]) -> SendResult: ...


class OutboxEvents(Protocol):
    """What happens around a delivery: room notices, alerts, audit (the service)."""

    async def delivered(self, mail: Claimed, result: SendResult) -> None: ...
    async def retrying(self, mail: Claimed, result: SendResult, delay_s: float) -> None: ...
    async def failed(self, mail: Claimed, result: SendResult, *, gave_up: bool) -> None: ...


class OutboxStore:
    def __init__(self, db: Database, *, lease_ms: int = 120_000) -> None:
        self.db = db
        self._lease = lease_ms

    @staticmethod
    async def enqueue(conn: Connection, mail: QueuedMail) -> bool:
        """Queue ``mail`` inside the caller's transaction; False if it was queued already."""
        now = now_ms()
        row = await conn.fetchval(
            "INSERT INTO mail_outbox (event_id, room_id, message_id, sender, recipient, kind, "
            "raw, created_at, due_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) "
            "ON CONFLICT DO NOTHING RETURNING event_id",
            mail.event_id,
            mail.room_id,
            mail.message_id,
            mail.sender,
            mail.recipient,
            mail.kind,
            mail.raw,
            now,
        )
        return row is not None

    async def claim(self, limit: int) -> list[Claimed]:
        now = now_ms()
        lock = " FOR UPDATE SKIP LOCKED" if self.db.scheme != Scheme.SQLITE else ""
        async with write_transaction(self.db) as conn:
            rows = await conn.fetch(
                "UPDATE mail_outbox SET claimed_until = $1, first_try_at = "
                "COALESCE(first_try_at, $2) WHERE event_id IN (SELECT event_id FROM mail_outbox "
                "WHERE status = 'pending' AND due_at <= $2 AND (claimed_until IS NULL OR "
                f"claimed_until < $2) ORDER BY due_at, created_at LIMIT $3{lock}) "
                f"RETURNING {_COLUMNS}",
                now + self._lease,
                now,
                limit,
            )
        out = [
            Claimed(
                str(r["event_id"]),
                str(r["room_id"]),
                str(r["message_id"]),
                str(r["sender"]),
                str(r["recipient"]),
                str(r["kind"]),
                bytes(r["raw"]),
                int(r["attempts"]),
                None if r["first_try_at"] is None else int(r["first_try_at"]),
                str(r["notified"]),
                int(r["claimed_until"]),
            )
            for r in rows
        ]
        out.sort(key=lambda c: c.event_id)  # RETURNING order is unspecified
        return out

    async def hold(self, mail: Claimed) -> bool:
        """Just before sending: is this claimed mail still ours? False when it was cancelled
        (`!sg mail unlink`) since the batch was claimed, or its lease ran out while earlier
        mail of the batch was slow (another worker may be sending it now). With most of the
        lease left this is a read (no commit per mail); past half, the lease is renewed."""
        if mail.claimed_until - now_ms() > self._lease // 2:
            still = await self.db.fetchval(
                "SELECT 1 FROM mail_outbox WHERE event_id = $1 AND status = 'pending' "
                "AND claimed_until = $2",
                mail.event_id,
                mail.claimed_until,
            )
            return still is not None
        row = await self.db.fetchval(
            "UPDATE mail_outbox SET claimed_until = $2 WHERE event_id = $1 AND "
            "status = 'pending' AND claimed_until = $3 AND claimed_until > $4 "
            "RETURNING event_id",
            mail.event_id,
            now_ms() + self._lease,
            mail.claimed_until,
            now_ms(),
        )
        return row is not None

    async def cancel(self, room_id: str) -> int:
        """Cancel the room's mail not sent yet (its link is gone); how many were."""
        rows = await self.db.fetch(
            "UPDATE mail_outbox SET status = 'cancelled', done_at = $2 "
            "WHERE room_id = $1 AND status = 'pending' RETURNING event_id",
            room_id,
            now_ms(),
        )
        return len(rows)

    async def finish(self, mail: Claimed, status: str, result: SendResult) -> None:
        await self.db.execute(
            "UPDATE mail_outbox SET status = $2, attempts = attempts + 1, last_code = $3, "
            "last_reply = $4, problem = $5, done_at = $6, claimed_until = NULL "
            "WHERE event_id = $1",
            mail.event_id,
            status,
            result.code,
            result.reply[:500],
            result.problem,
            now_ms(),
        )

    async def finish_sent(self, done: Sequence[tuple[Claimed, SendResult]]) -> None:
        """Mark a group of accepted mail sent, in one transaction (one commit per group)."""
        now = now_ms()
        async with write_transaction(self.db) as conn:
            await conn.executemany(
                "UPDATE mail_outbox SET status = 'sent', attempts = attempts + 1, "
                "last_code = $2, last_reply = $3, problem = $4, done_at = $5, "
                "claimed_until = NULL WHERE event_id = $1",
                [(m.event_id, r.code, r.reply[:500], r.problem, now) for m, r in done],
            )

    async def retry(self, mail: Claimed, result: SendResult, delay_s: float) -> None:
        await self.db.execute(
            "UPDATE mail_outbox SET attempts = attempts + 1, last_code = $2, last_reply = $3, "
            "problem = $4, due_at = $5, claimed_until = NULL WHERE event_id = $1",
            mail.event_id,
            result.code,
            result.reply[:500],
            result.problem,
            now_ms() + int(delay_s * 1000),
        )

    async def set_notified(self, event_id: str, state: str) -> None:
        await self.db.execute(
            "UPDATE mail_outbox SET notified = $2 WHERE event_id = $1", event_id, state
        )

    async def next_due_in(self) -> float | None:
        due = await self.db.fetchval(
            "SELECT MIN(CASE WHEN claimed_until IS NULL OR claimed_until < due_at THEN due_at "
            "ELSE claimed_until END) FROM mail_outbox WHERE status = 'pending'"
        )
        return None if due is None else max(0.0, (int(due) - now_ms()) / 1000)

    async def entries(self, room_id: str | None, *, limit: int = 20) -> list[QueueEntry]:
        """Pending and failed mail (a room's, or all), newest first."""
        where = "status <> 'sent'" + (" AND room_id = $2" if room_id else "")
        args: list[object] = [limit] + ([room_id] if room_id else [])
        rows = await self.db.fetch(
            "SELECT event_id, message_id, recipient, status, attempts, last_code, last_reply, "
            f"problem, due_at FROM mail_outbox WHERE {where} ORDER BY created_at DESC LIMIT $1",
            *args,
        )
        return [
            QueueEntry(
                str(r["event_id"]),
                str(r["message_id"]),
                str(r["recipient"]),
                str(r["status"]),
                int(r["attempts"]),
                None if r["last_code"] is None else int(r["last_code"]),
                None if r["last_reply"] is None else str(r["last_reply"]),
                None if r["problem"] is None else str(r["problem"]),
                int(r["due_at"]),
            )
            for r in rows
        ]

    async def counts(self, room_id: str | None = None) -> dict[str, int]:
        where, args = ("WHERE room_id = $1", [room_id]) if room_id else ("", [])
        rows = await self.db.fetch(
            f"SELECT status, COUNT(*) AS n FROM mail_outbox {where} GROUP BY status", *args
        )
        return {str(r["status"]): int(r["n"]) for r in rows}


class OutboxWorker:
    """Delivers due mail; run by the scheduler and woken when mail is queued."""

    def __init__(
        self,
        store: OutboxStore,
        sender: MailSender,
        events: OutboxEvents,
        schedule: RetrySchedule,
        *,
        batch: int = 50,
        on_result: Callable[[SendResult], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._sender = sender
        self._events = events
        self._schedule = schedule
        self._batch = batch
        self._on_result = on_result

    async def run_due(self) -> float | None:
        """Deliver everything due now; return seconds until the next retry is due."""
        while claimed := await self._store.claim(self._batch):
            sent = _SentGroups(self._store, self._events)
            try:
                for mail in claimed:
                    honour_cancellation()
                    await self._deliver(mail, sent)
            finally:
                await sent.wait()  # a batch's rows are recorded before the next claim
        honour_cancellation()
        return await self._store.next_due_in()

    async def _deliver(self, mail: Claimed, sent: _SentGroups) -> None:
        if not await self._store.hold(mail):
            log.info("Mail %s not sent: cancelled or taken over", mail.message_id)
            return
        result = await self._sender.send(mail.raw, [mail.recipient])
        try:
            if result.outcome == "sent":
                sent.add(mail, result)  # recorded while the next mail is sent
            else:
                await self._record(mail, result)
        finally:
            # Health and metrics after the row: their failure must not send it again.
            if self._on_result is not None:
                await _safely(self._on_result(result))

    async def _record(self, mail: Claimed, result: SendResult) -> None:
        """A refusal or a failure: the row (retry or failed) and the room, one by one."""
        now_s = now_ms() / 1000
        first = (mail.first_try_at or now_ms()) / 1000
        gave_up = result.outcome == "temporary" and self._schedule.given_up(first, now_s)
        if result.outcome == "permanent" or gave_up:
            await self._store.finish(mail, "failed", result)
            log.warning(
                "Mail %s failed (%s %s%s)",
                mail.message_id,
                result.code,
                result.problem or "",
                ", gave up" if gave_up else "",
            )
            await _safely(self._events.failed(mail, result, gave_up=gave_up))
            return
        delay = self._schedule.delay(mail.attempts + 1)
        await self._store.retry(mail, result, delay)
        log.info(
            "Mail %s not accepted yet (%s %s); retry in %.0f s",
            mail.message_id,
            result.code,
            result.problem or "",
            delay,
        )
        await _safely(self._events.retrying(mail, result, delay))


class _SentGroups:
    """Records accepted mail in groups while the worker sends the next (group commit).

    Each mail's row costs a commit (an fsync on PostgreSQL) and its audit record another;
    done one after the other they took most of the time per mail. Here the mail accepted
    while a group is being committed forms the next group, and the audit records of a
    group are written together (the audit log commits concurrent records at once). The
    worker waits for every group before it claims more, so at most one claimed batch is
    sent but not yet recorded: after a crash that batch is sent again, with the same
    Message-IDs, as a single mail was before.
    """

    def __init__(self, store: OutboxStore, events: OutboxEvents) -> None:
        self._store = store
        self._events = events
        self._pending: list[tuple[Claimed, SendResult]] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, mail: Claimed, result: SendResult) -> None:
        """Record ``mail`` soon; raises (nothing more is sent) if recording already failed."""
        task = self._task
        if task is not None and task.done() and not task.cancelled():
            error = task.exception()
            if error is not None:
                raise error
        self._pending.append((mail, result))
        if task is None or task.done():
            self._task = asyncio.create_task(self._run(), name="mail-outbox-sent")

    async def _run(self) -> None:
        while self._pending:
            group, self._pending = self._pending, []
            await self._store.finish_sent(group)
            for mail, result in group:
                log.info("Mail %s accepted by the relay (%s)", mail.message_id, result.code)
            await asyncio.gather(*(_safely(self._events.delivered(m, r)) for m, r in group))

    async def wait(self) -> None:
        """Until every mail added is recorded; raises if recording failed. A cancelled
        caller (shutdown) does not cancel a commit under way."""
        if self._task is not None:
            await asyncio.shield(self._task)


async def _safely(aw: Awaitable[None]) -> None:
    """A notice that cannot be posted must not make the mail be sent again."""
    try:
        await aw
    except Exception as e:
        log.warning("Could not report a mail's state: %s", type(e).__name__)
