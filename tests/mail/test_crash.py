"""The mail bridge survives crashes and cut connections, with real servers, on SQLite and on
PostgreSQL: nothing lost, nothing duplicated.

SantéGuard runs as its own process (`santeguard run -c config.yaml`, as in
tests/test_enforcement_durable.py) beside the session's mail stack (Synapse, the relay,
Dovecot: tests/mail/conftest.py), on the same database and crypto store as the stack's
in-process SantéGuard, which is stopped meanwhile and restarted afterwards.

- Outbound: a practitioner sends 1,000 messages in a linked encrypted room; the process
  is SIGKILLed twice while the relay is receiving, and restarted. The relay ends with
  exactly the 1,000 expected Message-IDs (derived from the events) and the outbox with
  nothing pending. A mail sent again after a kill (accepted by the relay, killed before
  the outbox recorded it) keeps its Message-ID, which receivers use to drop the repeat:
  allowed, and counted.
- Inbound: 1,000 mails land in the mailbox while SantéGuard posts them; its IMAP
  sessions are cut (``doveadm kick``) three times, Dovecot is restarted once and the
  process is SIGKILLed once. Each mail is posted exactly once: 1,000 ``posted`` rows and
  1,000 events from the correspondent's ghost in the room.

SLOW: each test moves 1,000 mails through real servers (about a minute per test and
database on two cores); the figures (duplicates re-sent, time per phase) are printed.
Most message texts are shorter than tests/logscan.py's minimum so that the session's
log scan does not search for 2,000 near-identical texts; one in fifty is long (and
searched for).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import format_datetime
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from mautrix.util.async_db import Database
from nio import RoomSendError

from bridge.db.database import open_database
from bridge.devtools.client import SimpleClient
from bridge.devtools.maillab import MAILBOX, MailLab
from bridge.devtools.nio_peer import NioPeer, notice_from
from bridge.identity.sources.extract import import_extract
from bridge.identity.sources.extract.lookup import current_import_id
from bridge.devtools.stack import DevStack
from bridge.mail.ghosts import ghost_localpart
from bridge.mail.outbox import OutboxStore
from bridge.mail.policy import message_id_for, room_tag, tagged_address
from tests.test_enforcement_durable import DOCTOR, _end, _ping, _plain, _spawn, _wait_listening
from tests.test_integration_identity import SAMPLE

pytestmark = pytest.mark.synapse

Lab = tuple[DevStack, MailLab]

MAILS = 1000
DOMAIN = MAILBOX.split("@")[1]
PEER_DOMAIN = "chu-exemple.mssante.test"
SENDERS = 4  # concurrent sends by the practitioner's client
CLAIM_SECONDS = 3  # mail.claim_seconds: a killed process's claims end this fast
PATIENCE = 180.0  # upper bound of every wait (a loaded machine is slow, not wrong)


def _figure(name: str, value: object) -> None:
    print(f"[mail crash] {name}: {value}")


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


class Child:
    """SantéGuard as child processes of the test, one at a time, on the stack's config
    (mail rooms kept quiet, short outbox claims)."""

    def __init__(self, stack: DevStack, workdir: Path) -> None:
        self.stack = stack
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.db: Database | None = None
        data = _plain(stack.config().model_dump())
        data["mail"].update(notify_sent=False, claim_seconds=CLAIM_SECONDS)
        self.config = workdir / "santeguard.yaml"
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump(data, f, sort_keys=False, allow_unicode=True)

    async def takeover(self) -> Database:
        """Stop the in-process SantéGuard, start the first child; the database, for reads."""
        await self.stack.stop_santeguard()
        await self.start()
        self.db = open_database(self.stack.config().database.uri)
        await self.db.start()
        return self.db

    async def start(self) -> None:
        self.runs += 1
        run = self.workdir / f"run-{self.runs}"
        self.proc = _spawn(self.config, run)
        await _wait_listening(self.stack, self.proc, run / "santeguard.log")

    async def sigkill(self) -> None:
        assert self.proc is not None
        await _end(self.proc, signal.SIGKILL)
        assert self.proc.returncode == -signal.SIGKILL
        self.proc = None

    async def close(self) -> None:
        if self.proc is not None:
            await _end(self.proc, signal.SIGTERM)
            assert self.proc.returncode == 0, "SantéGuard did not stop cleanly"
            self.proc = None
        if self.db is not None:
            await self.db.stop()
            self.db = None


@pytest.fixture
async def child(mail_stack: Lab, tmp_path: Path) -> AsyncIterator[Child]:
    stack, _ = mail_stack
    runner = Child(stack, tmp_path)
    try:
        yield runner
    finally:
        if runner.proc is not None:
            await _end(runner.proc, signal.SIGKILL)
        if runner.db is not None:
            await runner.db.stop()
        if stack.santeguard is None:  # the session's stack, as it was
            sg = await stack.start_santeguard()
            await asyncio.wait_for(sg.bot_ready.wait(), 60)
            await _ping(stack)

            async def reverified() -> bool:  # before the next test binds anyone
                runs = sg.metrics.registry.get_sample_value(
                    "santeguard_job_runs_total", {"job": "reverify", "outcome": "ok"}
                )
                return bool(runs)

            await _until(reverified, "the restarted SantéGuard's first re-verification", 60)


async def _doctor(stack: DevStack, store: Path) -> tuple[NioPeer, str]:
    """A practitioner's Element-like client (not started) and access token. The account is
    bound to an entry of the sample directory: a SantéGuard that starts re-verifies every
    binding, and unbinds (and removes) a practitioner the directory does not list."""
    sg = stack.santeguard
    assert sg is not None
    if await current_import_id(sg.db) is None:
        await import_extract(sg.db, SAMPLE)
    entry = await sg.directory.lookup(DOCTOR)
    assert entry is not None and entry.active
    user, _ = await stack.practitioner(f"crash{secrets.token_hex(4)}", entry)
    peer = NioPeer(stack.synapse.base_url, user.user_id, user.device_id, user.access_token, store)
    return peer, user.access_token


async def _linked_room(stack: DevStack, peer: NioPeer, address: str) -> str:
    room = await peer.create_encrypted_room(invite=(stack.bot_mxid,), name="Crash test")
    await peer.wait_for_member(room, stack.bot_mxid)
    since = peer.mark(room)
    await peer.send_text(room, f"!sg mail link {address}")
    await peer.wait_for(room, notice_from(stack.bot_mxid, address), since=since, timeout=30)
    return room


# -- outbound ---------------------------------------------------------------------------

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


class RelayWatch:
    """The Message-IDs the relay accepted for one recipient, in order, read incrementally."""

    def __init__(self, lab: MailLab, recipient: str) -> None:
        assert lab.relay is not None
        self._relay = lab.relay
        self._recipient = recipient
        self._read = 0
        self.ids: list[str] = []

    def distinct(self) -> int:
        messages = self._relay.messages
        for received in messages[self._read :]:
            if self._recipient in received.rcpt_tos:
                found = _MESSAGE_ID.search(received.data)
                self.ids.append(found.group(1).decode() if found else "")
        self._read = len(messages)
        return len(set(self.ids))


def _text(i: int) -> str:
    # Short texts are not searched for by the log scan (tests/logscan.py, MIN_TEXT_LEN).
    return f"Message de test n°{i} {secrets.token_hex(4)}" if i % 50 == 0 else f"m{i}"


async def _send_all(peer: NioPeer, room: str, up: asyncio.Event, sent: list[str]) -> None:
    """Send MAILS texts, SENDERS at a time, while ``up`` (the gate fails closed while
    SantéGuard is down). A failed send is retried with its transaction ID: Synapse
    answers a repeat of one that was stored with the same event."""
    numbers = iter(range(MAILS))

    async def sender() -> None:
        for i in numbers:
            content = {"msgtype": "m.text", "body": _text(i)}
            for _ in range(100):
                await up.wait()
                resp = await peer.client.room_send(
                    room, "m.room.message", content, tx_id=f"crash-{i}",
                    ignore_unverified_devices=True,
                )
                if not isinstance(resp, RoomSendError):
                    sent.append(str(resp.event_id))
                    break
                await asyncio.sleep(0.5)
            else:
                raise AssertionError(f"message {i} could not be sent")

    await asyncio.gather(*(sender() for _ in range(SENDERS)))


async def test_outbound_sigkilled_twice_loses_and_duplicates_nothing(
    mail_stack: Lab, child: Child, tmp_path: Path
) -> None:
    stack, lab = mail_stack
    address = f"crash.out.{secrets.token_hex(3)}@{PEER_DOMAIN}"
    peer, _ = await _doctor(stack, tmp_path / "doc")
    async with peer:
        room = await _linked_room(stack, peer, address)
        db = await child.takeover()
        outbox = OutboxStore(db)
        relay = RelayWatch(lab, address)
        up, sent = asyncio.Event(), []
        up.set()
        started = time.monotonic()
        sending = asyncio.create_task(_send_all(peer, room, up, sent))
        try:
            kills: list[tuple[int, int]] = []  # (distinct received before, sent before)
            for threshold in (100, 550):

                async def enough(threshold: int = threshold) -> bool:
                    if sending.done():
                        sending.result()  # raise what the sender raised
                    return relay.distinct() >= threshold

                await _until(enough, f"{threshold} mails at the relay")
                up.clear()
                await child.sigkill()
                kills.append((relay.distinct(), len(sent)))
                await child.start()
                up.set()
            await sending
            sent_s = time.monotonic() - started
            expected = {message_id_for(event_id, DOMAIN) for event_id in sent}
            assert len(sent) == len(expected) == MAILS

            async def all_sent() -> bool:
                counts = await outbox.counts(room)
                return relay.distinct() >= MAILS and counts == {"sent": MAILS}

            await _until(all_sent, "every mail sent and recorded")
            total_s = time.monotonic() - started
        finally:
            up.set()
            if not sending.done():
                sending.cancel()
        await asyncio.sleep(CLAIM_SECONDS + 1)  # nothing else comes in late
        relay.distinct()
        assert set(relay.ids) == expected, "lost or unexpected Message-IDs"
        assert await outbox.counts(room) == {"sent": MAILS}
        resent = len(relay.ids) - MAILS
        await child.close()
    _figure(f"outbound kills at (distinct at relay, sent by the peer)", kills)
    _figure("outbound re-sends (same Message-ID, after a kill)", resent)
    _figure("outbound time: all sent by the peer / all at the relay (s)", (round(sent_s), round(total_s)))
