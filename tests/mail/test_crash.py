"""The mail bridge survives crashes and cut connections, with real servers, on SQLite and on
PostgreSQL: nothing lost, nothing duplicated.

SantéGuard runs as its own process (`santeguard run -c config.yaml`, as in
tests/test_enforcement_durable.py) beside the session's mail stack (Synapse, the relay,
Dovecot: tests/mail/conftest.py), on the same database and crypto store as the stack's
in-process SantéGuard, which is stopped meanwhile and restarted afterwards.

- Outbound: a practitioner sends 1,000 messages over three linked encrypted rooms; the
  process is SIGKILLed twice while the relay receives, and restarted: once between two
  mails, once in the middle of a mail's DATA (the relay keeps it, SantéGuard never hears
  the 250). The relay ends with exactly the 1,000 expected Message-IDs (derived from the
  events) and the outbox with every row sent. The mail cut mid-DATA is sent again with
  its Message-ID, which receivers use to drop the repeat: allowed, and counted.
- Inbound: 1,000 mails land in the mailbox while SantéGuard posts them; its IMAP
  sessions are cut (``doveadm kick``) three times, Dovecot is restarted once and the
  process is SIGKILLed once. Each mail is posted exactly once: 1,000 ``posted`` rows and
  1,000 events from the correspondent's ghost in the room (a post repeated after the
  kill reuses its transaction ID, so Synapse returns the first event).

SLOW: each test moves its mails through real servers (1,000 mails take about 2 minutes
per test and database on two busy cores). ``make test`` moves 400 mails each way (the
kills and cuts at the same fractions of the run); ``SANTEGUARD_LONG_TESTS=1`` the 1,000
above.
The figures (re-sends, time per phase) are printed (``-s``). Most message texts are
shorter than tests/logscan.py's minimum, so the session's log scan does not search for
thousands of near-identical texts; one in fifty is long (and searched for).
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
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from mautrix.util.async_db import Database, Scheme
from nio import RoomSendError

from bridge.db.database import open_database
from bridge.devtools.client import SimpleClient
from bridge.devtools.maillab import MAILBOX, MailLab
from bridge.devtools.nio_peer import NioPeer, notice_from
from bridge.devtools.stack import DevStack
from bridge.identity.sources.extract import import_extract
from bridge.identity.sources.extract.lookup import current_import_id
from bridge.mail.ghosts import ghost_localpart, txn_id
from bridge.mail.outbox import OutboxStore
from bridge.mail.policy import message_id_for, room_tag, tagged_address
from tests.reliability.lab import Strands, appservice_up
from tests.test_enforcement_durable import DOCTOR, _end, _ping, _plain, _spawn, _wait_listening
from tests.test_integration_identity import SAMPLE

pytestmark = pytest.mark.synapse

Lab = tuple[DevStack, MailLab]

# 400 mails each way in `make test` (the kills and cuts at the same fractions), the 1,000
# the figures come from with SANTEGUARD_LONG_TESTS=1.
LONG = os.environ.get("SANTEGUARD_LONG_TESTS") == "1"
MAILS = 1000 if LONG else 400
MAILS_IN = 1000 if LONG else 400
DOMAIN = MAILBOX.split("@")[1]
PEER_DOMAIN = "chu-exemple.mssante.test"
ROOMS = 3  # linked rooms the outbound messages are spread over
SENDERS = 3  # concurrent sends per room by the practitioner's client
# SIGKILL once this many distinct mails reached the relay: between two mails, or while
# the relay takes one (accepted, but SantéGuard never hears the reply: sent again).
KILLS = ((MAILS // 10, False), (MAILS * 55 // 100, True))
CLAIM_SECONDS = 3  # mail.claim_seconds: a killed process's claims end this fast
PATIENCE = 180.0  # upper bound of every wait (a loaded machine is slow, not wrong)


def _figure(name: str, value: object) -> None:
    print(f"[mail crash] {name}: {value}")


class Phases:
    """Seconds spent in each phase of a test, for the figures."""

    def __init__(self) -> None:
        self._mark = time.monotonic()
        self.seconds: dict[str, float] = {}

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self._mark, 1)
        self._mark = now


async def _until(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = PATIENCE
) -> None:
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

    async def sigkill_and_restart(self) -> float:
        """SIGKILL the child (unless already killed), start the next; seconds down."""
        assert self.proc is not None
        await _end(self.proc, signal.SIGKILL)
        assert self.proc.returncode == -signal.SIGKILL
        down = time.monotonic()
        await self.start()
        return round(time.monotonic() - down, 1)

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

            async def settled() -> bool:
                """The re-verification is not about to run (it ran at this start, or ran
                earlier and is not due: its runs are claimed, docs/cluster.md) before the
                next test binds anyone; the first relay probe has run: a stop that
                cancels a probe mid-reply can hang (Python 3.11's wait_for may swallow
                the cancellation)."""

                def ran(job: str) -> bool:
                    return bool(
                        sg.metrics.registry.get_sample_value(
                            "santeguard_job_runs_total", {"job": job, "outcome": "ok"}
                        )
                    )

                due = await sg.cluster.claims.due_in("reverify") if sg.cluster.claims else 0
                return ran("mail_probe") and (ran("reverify") or bool(due and due > 60))

            await _until(settled, "the restarted SantéGuard's first jobs", 60)


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
        self.cut: list[str] = []  # mails taken by the relay while SantéGuard was killed

    def distinct(self) -> int:
        messages = self._relay.messages
        for received in messages[self._read :]:
            if self._recipient in received.rcpt_tos:
                found = _MESSAGE_ID.search(received.data)
                self.ids.append(found.group(1).decode() if found else "")
        self._read = len(messages)
        return len(set(self.ids))

    async def kill_during_data(self, threshold: int, child: Child) -> None:
        """SIGKILL ``child`` once ``threshold`` mails arrived, in the middle of the next
        mail's DATA: the relay keeps the mail, SantéGuard never gets the 250 reply."""
        relay = self._relay
        original = relay.deliver
        killed = asyncio.Event()

        async def deliver(data: bytes, mail_from: str, rcpts: list[str]) -> None:
            if self._recipient in rcpts and not killed.is_set() and self.distinct() >= threshold:
                assert child.proc is not None
                child.proc.kill()  # our child, by its pid
                found = _MESSAGE_ID.search(data)
                self.cut.append(found.group(1).decode() if found else "")
                killed.set()
            if original is not None:
                await original(data, mail_from, rcpts)

        relay.deliver = deliver
        try:
            await asyncio.wait_for(killed.wait(), PATIENCE)
        finally:
            relay.deliver = original


def _text(i: int) -> str:
    # Short texts are not searched for by the log scan (tests/logscan.py, MIN_TEXT_LEN).
    return f"Message de test n°{i} {secrets.token_hex(4)}" if i % 50 == 0 else f"m{i}"


async def _send_all(peer: NioPeer, rooms: list[str], up: asyncio.Event, sent: list[str]) -> None:
    """Send MAILS texts over ``rooms`` (Synapse creates one room's events one at a time),
    SENDERS per room, while ``up``: the gate fails closed while SantéGuard is down. A
    failed send is retried with its transaction ID (Synapse answers a repeat of one it
    stored with the same event)."""
    numbers = iter(range(MAILS))

    async def sender(room: str) -> None:
        for i in numbers:
            content = {"msgtype": "m.text", "body": _text(i)}
            for _ in range(100):
                await up.wait()
                resp = await peer.client.room_send(
                    room,
                    "m.room.message",
                    content,
                    tx_id=f"crash-{i}",
                    ignore_unverified_devices=True,
                )
                if not isinstance(resp, RoomSendError):
                    sent.append(str(resp.event_id))
                    break
                await asyncio.sleep(0.5)
            else:
                raise AssertionError(f"message {i} could not be sent")

    await asyncio.gather(*(sender(room) for room in rooms for _ in range(SENDERS)))


async def test_outbound_sigkilled_twice_loses_and_duplicates_nothing(
    mail_stack: Lab, child: Child, tmp_path: Path
) -> None:
    stack, lab = mail_stack
    phases = Phases()
    address = f"crash.out.{secrets.token_hex(3)}@{PEER_DOMAIN}"
    peer, _ = await _doctor(stack, tmp_path / "doc")
    async with peer:
        rooms = [await _linked_room(stack, peer, address) for _ in range(ROOMS)]
        db = await child.takeover()
        phases.done("setup")
        outbox = OutboxStore(db)
        relay = RelayWatch(lab, address)
        up, sent = asyncio.Event(), list[str]()
        up.set()
        sending = asyncio.create_task(_send_all(peer, rooms, up, sent))

        async def sent_and_recorded() -> int:  # -1 while any row is not "sent"
            counts = [await outbox.counts(room) for room in rooms]
            sent_rows = sum(c.get("sent", 0) for c in counts)
            return sent_rows if sum(sum(c.values()) for c in counts) == sent_rows else -1

        stranded: list[int] = []  # Synapse's transactions it left unsent (see _unstrand)
        try:
            kills: list[tuple[int, float]] = []  # (distinct at the relay, seconds down)
            for threshold, during_data in KILLS:

                async def enough(threshold: int = threshold) -> bool:
                    if sending.done():
                        sending.result()  # raise what the sender raised
                    return relay.distinct() >= threshold

                if during_data:  # the relay takes a mail, SantéGuard dies before the reply
                    await relay.kill_during_data(threshold, child)
                else:
                    await _until(enough, f"{threshold} mails at the relay")
                up.clear()
                at = relay.distinct()
                kills.append((at, await child.sigkill_and_restart()))
                up.set()
            await sending
            phases.done("all sent by the practitioner")
            expected = {message_id_for(event_id, DOMAIN) for event_id in sent}
            assert len(sent) == len(expected) == MAILS

            async def all_sent() -> bool:
                return relay.distinct() >= MAILS and await sent_and_recorded() == MAILS

            strands = Strands(_SynapseOf(stack))  # type: ignore[arg-type]

            async def all_sent_or_stranded() -> bool:
                return await all_sent() or bool(await strands.stranded())

            try:
                await _until(all_sent_or_stranded, "every mail sent and recorded")
                if not await all_sent():
                    stranded.extend(await strands.stranded())
                    await _unstrand(child, peer, rooms[0], sent[-1], stack)
                    await _until(all_sent, "every mail sent and recorded, once unstranded")
            except AssertionError as e:
                raise AssertionError(f"{e}; {await _stuck(db, rooms, relay, sent)}") from None
            phases.done("then all at the relay")
        finally:
            up.set()
            if not sending.done():
                sending.cancel()
        relay.distinct()  # every row is "sent": no process will send any of them again
        assert set(relay.ids) == expected, "lost or unexpected Message-IDs"
        assert await sent_and_recorded() == MAILS
        resent = sorted(m for m in set(relay.ids) if relay.ids.count(m) > 1)
        # The mail the relay took while SantéGuard died is sent again, once, same ID.
        assert relay.cut and all(relay.ids.count(m) == 2 for m in relay.cut)
        phases.done("checks")
        await child.close()
    phases.done("SIGTERM and stop")
    _figure("outbound kills (distinct Message-IDs at the relay, seconds down)", kills)
    _figure("outbound re-sent (same Message-ID, after a kill)", len(relay.ids) - MAILS)
    _figure("outbound transactions stranded by Synapse, then unstranded", stranded)
    _figure("outbound Message-IDs received twice", resent)
    _figure("outbound phases (s)", phases.seconds)


class _SynapseOf:
    """The stack's Synapse database, as tests/reliability/lab.py's readers take it."""

    def __init__(self, stack: DevStack) -> None:
        self.synapse_db = stack.synapse.workdir / "homeserver.db"


async def _unstrand(child: Child, peer: NioPeer, room: str, event_id: str, stack: DevStack) -> None:
    """Make Synapse send the transactions it stranded (a Synapse 1.163 bug, see
    tests/reliability/lab.py ``Strands`` and docs/reliability.md): only a failed delivery
    starts its recoverer, which sends the oldest owed first. The gate refuses messages
    while SantéGuard is down, so the delivery that fails carries a read receipt."""
    assert child.proc is not None
    await _end(child.proc, signal.SIGKILL)
    lab = _SynapseOf(stack)
    await peer.client.room_read_markers(room, event_id, event_id)

    async def down() -> bool:
        return not await appservice_up(lab)  # type: ignore[arg-type]

    await _until(down, "Synapse to see the appservice down")
    await child.start()


async def _stuck(db: Database, rooms: list[str], relay: RelayWatch, sent: list[str]) -> str:
    """What is left when the outbox does not drain: events never queued, unsent rows, and
    on PostgreSQL the sessions that are not idle (what they wait for)."""
    rows = await db.fetch("SELECT event_id, room_id, status, claimed_until FROM mail_outbox")
    mine = [dict(r) for r in rows if r["room_id"] in rooms]
    never_queued = sorted(set(sent) - {str(r["event_id"]) for r in mine})
    unsent = [r for r in mine if r["status"] != "sent"]
    for row in unsent:
        row["at_relay"] = relay.ids.count(message_id_for(str(row["event_id"]), DOMAIN))
    sessions: list[dict[str, object]] = []
    if db.scheme != Scheme.SQLITE:
        activity = await db.fetch(
            "SELECT pid, state, wait_event_type, wait_event, left(query, 120) AS query "
            "FROM pg_stat_activity WHERE datname = current_database() AND state <> 'idle' "
            "AND pid <> pg_backend_pid()"
        )
        sessions = [dict(r) for r in activity]
    return (
        f"{len(set(relay.ids))} distinct at the relay; never queued {never_queued}; "
        f"unsent {unsent}; busy sessions {sessions}; now {int(time.time() * 1000)}"
    )


# -- inbound ----------------------------------------------------------------------------

SENDER = f"dr.crash@{PEER_DOMAIN}"


def _inbound(i: int, to: str, run: str) -> bytes:
    """One correspondent's mail to the room's tagged address (how replies come back)."""
    return (
        f"From: Dr Crash <{SENDER}>\r\nTo: {to}\r\nSubject: r{i}\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\n"
        f"Message-ID: <crash.{run}.{i}@{PEER_DOMAIN}>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\nr{i}\r\n"
    ).encode()


async def _ghost_events(client: SimpleClient, room: str, ghost: str) -> list[str]:
    """IDs of the room's events sent by ``ghost``, from the homeserver (``/messages``)."""
    found: list[str] = []
    token = ""
    while True:
        path = f"/rooms/{quote(room)}/messages?dir=b&limit=500"
        data = await client.request("GET", path + (f"&from={quote(token)}" if token else ""))
        chunk = data.get("chunk", [])
        found += [
            str(e["event_id"])
            for e in chunk
            if e.get("sender") == ghost and e.get("type") == "m.room.encrypted"
        ]
        if not chunk or not data.get("end"):
            return found
        token = str(data["end"])


async def test_inbound_cut_connections_and_sigkill_post_each_mail_once(
    mail_stack: Lab, child: Child, tmp_path: Path
) -> None:
    stack, lab = mail_stack
    dovecot = lab.dovecot
    assert dovecot is not None
    phases = Phases()
    peer, token = await _doctor(stack, tmp_path / "doc")
    async with peer:  # only to link the room (the command is encrypted)
        room = await _linked_room(stack, peer, f"crash.in.{secrets.token_hex(3)}@{PEER_DOMAIN}")
    run = secrets.token_hex(4)
    to = tagged_address(MAILBOX, room_tag(room))
    mails = [_inbound(i, to, run) for i in range(MAILS_IN)]
    db = await child.takeover()
    phases.done("setup")

    def posted(wanted: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            count = await db.fetchval(
                "SELECT COUNT(*) FROM mail_inbound WHERE status = 'posted' AND message_id LIKE $1",
                f"<crash.{run}.%",
            )
            return int(count) >= wanted

        return check

    async def sigkill() -> None:
        await child.sigkill_and_restart()

    # (mails delivered so far, posted count to wait for, then the cut)
    def at(thousandths: int) -> int:
        return MAILS_IN * thousandths // 1000

    plan: list[tuple[int, int, Callable[[], Awaitable[None]]]] = [
        (at(150), at(50), dovecot.kill_connections),
        (at(350), at(200), dovecot.kill_connections),
        (at(550), at(400), dovecot.restart),
        (at(750), at(600), sigkill),
        (at(900), at(800), dovecot.kill_connections),
    ]
    delivered = 0
    for upto, wanted, cut in [*plan, (MAILS_IN, MAILS_IN, None)]:
        for raw in mails[delivered:upto]:
            await dovecot.deliver(raw, sender=SENDER)
        delivered = upto
        await _until(posted(wanted), f"{wanted} mails posted")
        if cut is not None:
            await cut()
    phases.done("all posted, through 5 cuts")

    rows = await db.fetch(
        "SELECT message_id, status, event_id FROM mail_inbound WHERE message_id LIKE $1",
        f"<crash.{run}.%",
    )
    assert len(rows) == MAILS_IN and {r["status"] for r in rows} == {"posted"}
    recorded = {str(r["event_id"]) for r in rows}
    ghost = f"@{ghost_localpart('santeguard', SENDER)}:{stack.server_name}"
    async with SimpleClient(stack.synapse.base_url, peer.user_id, token) as client:
        events = await _ghost_events(client, room, ghost)
    assert len(events) == MAILS_IN, f"{len(events)} events from the ghost for {MAILS_IN} mails"
    assert set(events) == recorded
    txns = {txn_id(f"<crash.{run}.{i}@{PEER_DOMAIN}>", 0) for i in range(MAILS_IN)}
    posts = _posts(stack, txns)
    assert posts >= MAILS_IN
    phases.done("checks")
    await child.close()
    phases.done("SIGTERM and stop")
    _figure("inbound phases (s)", phases.seconds)
    _figure("inbound posts repeated after a cut (same transaction ID)", posts - MAILS_IN)


def _posts(stack: DevStack, txns: set[str]) -> int:
    """How many times SantéGuard asked Synapse to post one of ``txns`` (its access log)."""
    log = stack.synapse.log_path.read_text(encoding="utf-8", errors="replace")
    return sum(
        1
        for found in re.finditer(r'"PUT [^"]*/send/m\.room\.encrypted/(sgmail\.[0-9a-f]+\.0)', log)
        if found.group(1) in txns
    )
