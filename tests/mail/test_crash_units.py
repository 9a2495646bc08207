"""Units behind tests/mail/test_crash.py (real servers there):

- the IMAP watcher across lost connections and crashes, with a scripted mailbox: a
  working connection that drops is reopened at once without alarming the admins, one
  that fails before doing anything is reported and retried later (no tight loop), and a
  mail whose handling was cut short is read again by the next process;
- stopping while the connection waits in IDLE is immediate (real Dovecot);
- a stop is honoured by the outbox even when a library swallowed the cancellation
  (Python 3.11's wait_for, which aiosmtplib uses for every reply).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from mautrix.util.async_db import Database

from bridge.db.txn import write_transaction
from bridge.devtools.dovecot import DOVECOT_BIN, Dovecot
from bridge.devtools.mailcerts import make_pki
from bridge.mail.imap import ImapMailbox, ImapSettings, MailboxUnavailable
from bridge.mail.inbox import InboxState, InboxWatcher
from bridge.mail.outbox import Claimed, OutboxStore, OutboxWorker, QueuedMail
from bridge.mail.policy import RetrySchedule
from bridge.mail.smtp import SendResult
from bridge.mail.tls import TlsFiles


class ScriptedBox:
    """A mailbox holding ``uids``; ``fail`` names the call that loses the connection."""

    def __init__(self, uids: list[int], fail: str | None = None) -> None:
        self.uids = uids
        self.fail = fail
        self.asked_after: list[int] = []
        self.closed = False

    def _maybe_fail(self, call: str) -> None:
        if self.fail == call:
            raise MailboxUnavailable("unreachable")

    async def connect(self) -> int:
        self._maybe_fail("connect")
        return 7

    async def uids_after(self, uid: int) -> list[int]:
        self._maybe_fail("uids_after")
        self.asked_after.append(uid)
        return [u for u in self.uids if u > uid]

    async def fetch(self, uid: int) -> bytes:
        return f"mail {uid}".encode()

    async def wait(self, timeout: float) -> None:
        self._maybe_fail("wait")

    async def close(self) -> None:
        self.closed = True


class Run:
    """A watcher over boxes handed out in order, recording reports and handled UIDs."""

    def __init__(self, db: Database, boxes: list[ScriptedBox]) -> None:
        self.boxes = boxes
        self.opened: list[ScriptedBox] = []
        self.reports: list[str | None] = []
        self.handled: list[int] = []
        self.fail_on: int | None = None
        self.watcher = InboxWatcher(
            self._next, InboxState(db, "INBOX"), self._handle, self._report, wait_seconds=1
        )

    def _next(self) -> ScriptedBox:
        box = self.boxes[len(self.opened)]
        self.opened.append(box)
        return box

    async def _handle(self, raw: bytes, uidvalidity: int, uid: int) -> None:
        if uid == self.fail_on:
            raise RuntimeError("killed while posting")
        self.handled.append(uid)

    async def _report(self, problem: str | None) -> None:
        self.reports.append(problem)


async def test_a_working_connection_that_drops_is_reopened_at_once(db: Database) -> None:
    run = Run(db, [ScriptedBox([1, 2], fail="wait"), ScriptedBox([1, 2, 3])])
    assert await run.watcher.round() == 0.0  # lost while idling: no error, no alert
    assert run.reports == [None] and run.opened[0].closed
    await run.watcher.round()
    assert run.handled == [1, 2, 3]
    assert run.opened[1].asked_after[0] == 2  # went on from the last mail handled


@pytest.mark.parametrize("fail", ["connect", "uids_after"])
async def test_a_connection_failing_before_doing_anything_is_reported(
    db: Database, fail: str
) -> None:
    run = Run(db, [ScriptedBox([1], fail=fail), ScriptedBox([1], fail=fail)])
    first = await run.watcher.round()
    second = await run.watcher.round()
    assert 0 < first < second  # retried later, and later again: no tight loop
    assert run.reports == ["unreachable", "unreachable"] and run.handled == []


async def test_a_mail_cut_short_is_read_again_by_the_next_process(db: Database) -> None:
    first = Run(db, [ScriptedBox([1, 2, 3])])
    first.fail_on = 2
    with pytest.raises(RuntimeError):
        await first.watcher.round()
    assert first.handled == [1]
    restarted = Run(db, [ScriptedBox([1, 2, 3])])  # same database, new process
    await restarted.watcher.round()
    assert restarted.handled == [2, 3]


async def test_closing_a_connection_waiting_in_idle_is_immediate(tmp_path: Path) -> None:
    """A shutdown cancels the wait mid-IDLE; the polite LOGOUT must not then sit behind the
    IDLE until its timeout (it made every stop take five more seconds)."""
    if not DOVECOT_BIN.exists():
        pytest.skip(f"{DOVECOT_BIN} is missing: `make test` installs Dovecot")
    pki = make_pki(tmp_path / "pki")
    async with Dovecot(tmp_path / "dovecot", pki) as server:
        box = ImapMailbox(
            ImapSettings(
                host="127.0.0.1",
                port=server.imap_port,
                tls=TlsFiles(pki.ca_cert, pki.client_cert, pki.client_key),
                username=server.user,
                password=server.password,
            )
        )
        await box.connect()
        waiting = asyncio.create_task(box.wait(30))
        await asyncio.sleep(0.5)  # in IDLE now
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        started = time.monotonic()
        await box.close()
        assert time.monotonic() - started < 2


class SwallowingRelay:
    """Accepts every mail; the third send swallows the cancellation that lands during it,
    as aiosmtplib's replies can on Python 3.11."""

    def __init__(self) -> None:
        self.sent = 0
        self.task: asyncio.Task[float | None] | None = None

    async def send(self, raw: bytes, recipients: Sequence[str]) -> SendResult:
        self.sent += 1
        if self.sent == 3:
            assert self.task is not None
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(1)
        return SendResult("sent", 250, "2.0.0 OK", None)


class Told:
    async def delivered(self, mail: Claimed, result: SendResult) -> None:
        pass

    async def retrying(self, mail: Claimed, result: SendResult, delay_s: float) -> None:
        pass

    async def failed(self, mail: Claimed, result: SendResult, *, gave_up: bool) -> None:
        pass


async def test_a_stop_swallowed_by_the_relay_client_still_stops_the_outbox(
    db: Database,
) -> None:
    for i in range(10):
        mail = QueuedMail(f"$e{i}", "!room:x", f"<m{i}@x.test>", "@doc:x", "to@chu.test", b"raw")
        async with write_transaction(db) as conn:
            await OutboxStore.enqueue(conn, mail)
    relay = SwallowingRelay()
    worker = OutboxWorker(OutboxStore(db), relay, Told(), RetrySchedule())
    relay.task = asyncio.create_task(worker.run_due())
    with pytest.raises(asyncio.CancelledError):
        await relay.task
    assert relay.sent == 3  # stopped at the next mail, not after the whole queue
    rows = await db.fetch("SELECT status, COUNT(*) AS n FROM mail_outbox GROUP BY status")
    assert {str(r["status"]): int(r["n"]) for r in rows} == {"sent": 3, "pending": 7}
