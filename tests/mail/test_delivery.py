"""Outbound delivery end to end, from a practitioner's Matrix message to the relay: what
the room, the queue, the admins, ``/ready`` and the metrics see when the relay is down,
answers 4xx or 5xx, or when TLS cannot be set up (expired client certificate, a relay
certificate from a foreign CA, a relay offering no STARTTLS, a certificate expiring
soon); that `!sg mail unlink` stops mail still waiting; that a failure reaches the admins
even when the room cannot be told; and that only verified practitioners' messages leave.

Real servers: Synapse, SantéGuard, the aiosmtpd relay (STARTTLS + client certificates)
and Dovecot. The linked-room cases run on both databases (``mail_stack``); the
configuration problems need SantéGuards of their own and run on SQLite. Two worker
tests (what a claimed batch may still send) need only the database, both kinds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from mautrix.util.async_db import Database
from nio import RoomInviteError, RoomKickError, RoomMessageNotice
from prometheus_client.parser import text_string_to_metric_families

from bridge.db.txn import write_transaction
from bridge.devtools.mailcerts import Pki
from bridge.devtools.maillab import CORRESPONDENT, MailLab
from bridge.devtools.mailserver import RelayServer
from bridge.devtools.nio_peer import NioPeer, notice_from
from bridge.devtools.people import practitioner
from bridge.devtools.stack import DevStack
from bridge.gate.policy import RoomPolicy
from bridge.mail.outbox import Claimed, OutboxStore, OutboxWorker, QueuedMail
from bridge.mail.policy import RetrySchedule, message_id_for
from bridge.mail.smtp import SendResult
from bridge.mail.text import CATALOG

pytestmark = pytest.mark.synapse

Lab = tuple[DevStack, MailLab]
DOMAIN = "cpts.mssante.test"
FR = CATALOG["fr"]
TIMEOUT = 30.0
# mail_config(): retry_base_seconds=1. A retry the worker wrongly scheduled would run
# after 1 s; waiting three times that leaves no room for one to hide.
NO_RETRY_WAIT = 3.0
EXPIRY_METRIC = "santeguard_mail_client_cert_expiry_timestamp_seconds"


# -- helpers ---------------------------------------------------------------------------


async def _until(check: Callable[[], Any], timeout: float = TIMEOUT, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _in_reply_to(source: dict[str, Any]) -> str | None:
    relates = source.get("content", {}).get("m.relates_to") or {}
    reply = relates.get("m.in_reply_to") or {}
    event_id = reply.get("event_id")
    return str(event_id) if event_id else None


def reply_notice(sender: str, event_id: str, fragment: str) -> Callable[[Any], bool]:
    """A decrypted notice from ``sender`` answering ``event_id`` and containing ``fragment``."""

    def match(event: Any) -> bool:
        return (
            isinstance(event, RoomMessageNotice)
            and event.sender == sender
            and fragment in event.body
            and _in_reply_to(event.source) == event_id
        )

    return match


class AlertLog(logging.Handler):
    """The admin alerts SantéGuard raised (``AdminAlerts`` logs each one before posting)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("ALERT:"):
            self.texts.append(message)

    def mark(self) -> int:
        return len(self.texts)

    def matching(self, *fragments: str, since: int = 0) -> list[str]:
        return [t for t in self.texts[since:] if all(f in t for f in fragments)]


@pytest.fixture(scope="module")
def alerts() -> Iterator[AlertLog]:
    handler = AlertLog()
    logger = logging.getLogger("santeguard.alerts")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@dataclass
class Endpoints:
    """SantéGuard's operations endpoints."""

    base: str

    async def ready(self) -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession() as http, http.get(f"{self.base}/ready") as resp:
            return resp.status, await resp.json()

    async def samples(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """The samples of metric ``name`` on ``/metrics``, by their sorted labels."""
        async with aiohttp.ClientSession() as http, http.get(f"{self.base}/metrics") as resp:
            text = await resp.text()
        return {
            tuple(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        }

    async def mail_problems(self) -> dict[tuple[str, str], float]:
        """``santeguard_mail_problem`` samples, by (channel, problem)."""
        found = await self.samples("santeguard_mail_problem")
        return {(dict(k)["channel"], dict(k)["problem"]): v for k, v in found.items()}

    async def client_cert_expiry(self) -> float | None:
        return (await self.samples(EXPIRY_METRIC)).get(())


def endpoints(stack: DevStack) -> Endpoints:
    return Endpoints(f"http://127.0.0.1:{stack.as_port}")


async def new_doctor(stack: DevStack, store: Path, n: int) -> NioPeer:
    user, _ = await stack.practitioner(f"doc{n}", practitioner(n, last="Curie", first="Marie"))
    peer = NioPeer(stack.synapse.base_url, user.user_id, user.device_id, user.access_token, store)
    await peer.start()
    return peer


async def linked_room(stack: DevStack, peer: NioPeer, address: str = CORRESPONDENT) -> str:
    room = await peer.create_encrypted_room(invite=(stack.bot_mxid,), name="RCP cardio")
    await peer.wait_for_member(room, stack.bot_mxid)
    since = peer.mark(room)
    await peer.send_text(room, f"!sg mail link {address}")
    await peer.wait_for(room, notice_from(stack.bot_mxid, address), since=since, timeout=TIMEOUT)
    return room


async def command(peer: NioPeer, bot: str, room: str, text: str, fragment: str) -> str:
    """Run a ``!sg`` command in the room; the bot's answer (a notice containing ``fragment``)."""
    since = peer.mark(room)
    await peer.send_text(room, text)
    answer = await peer.wait_for(room, notice_from(bot, fragment), since=since, timeout=TIMEOUT)
    return str(answer.body)


def outbox_job(stack: DevStack) -> Callable[[], Any]:
    """The scheduler's outbox job: one run delivers everything due now."""
    assert stack.santeguard is not None
    return next(j.run for j in stack.santeguard.mail.jobs if j.name == "mail_outbox")


async def outbox_row(stack: DevStack, event_id: str) -> dict[str, Any] | None:
    assert stack.santeguard is not None
    row = await stack.santeguard.db.fetchrow(
        "SELECT status, attempts, last_code, last_reply, problem FROM mail_outbox "
        "WHERE event_id = $1",
        event_id,
    )
    return None if row is None else dict(row)


def relay_of(lab: MailLab) -> RelayServer:
    assert lab.relay is not None
    return lab.relay


@pytest.fixture
async def doctor(mail_stack: Lab, tmp_path: Path) -> AsyncIterator[NioPeer]:
    stack, _ = mail_stack
    peer = await new_doctor(stack, tmp_path / "doc", time.monotonic_ns() % 10_000_000)
    try:
        yield peer
    finally:
        await peer.stop()


# -- the relay's answers (both databases) ----------------------------------------------


async def test_relay_down_then_back_delivers_once(
    mail_stack: Lab, doctor: NioPeer, alerts: AlertLog
) -> None:
    stack, lab = mail_stack
    bot, relay = stack.bot_mxid, relay_of(lab)
    room = await linked_room(stack, doctor)
    unreachable = FR["mail.problem.unreachable"]
    told = alerts.mark()

    await relay.pause()
    try:
        since = doctor.mark(room)
        event = await doctor.send_text(room, "Avis cardio demandé pendant la panne du relais")
        message_id = message_id_for(event, DOMAIN)
        notice = await doctor.wait_for(
            room, reply_notice(bot, event, "↻ Pas encore remis"), since=since, timeout=TIMEOUT
        )
        assert CORRESPONDENT in notice.body
        assert unreachable in notice.body and "Nouvel essai" in notice.body

        queue = await command(doctor, bot, room, "!sg mail queue", "⏳")
        line = next(x for x in queue.splitlines() if x.startswith("⏳"))
        assert CORRESPONDENT in line and unreachable in line
        row = await outbox_row(stack, event)
        assert row is not None and row["status"] == "pending" and row["problem"] == "unreachable"
        assert alerts.matching("(smtp)", unreachable, since=told)
        assert message_id not in relay.message_ids()
    finally:
        await relay.resume()

    await doctor.wait_for(room, reply_notice(bot, event, "✓"), since=since, timeout=TIMEOUT)
    # Once more, everything due now: the mail is not sent again.
    await outbox_job(stack)()
    assert relay.message_ids().count(message_id) == 1
    row = await outbox_row(stack, event)
    assert row is not None and row["status"] == "sent" and row["attempts"] >= 2
    # One retry notice for one reason, however many attempts it took.
    retries = [e for e in doctor.events[room][since:] if reply_notice(bot, event, "↻")(e)]
    assert len(retries) == 1
    await _until(
        lambda: alerts.matching(FR["alert.mail_recovered"].format(channel="smtp"), since=told),
        what="the recovery alert",
    )


async def test_temporary_refusal_is_retried_then_delivered_once(
    mail_stack: Lab, doctor: NioPeer
) -> None:
    stack, lab = mail_stack
    bot, relay = stack.bot_mxid, relay_of(lab)
    room = await linked_room(stack, doctor)
    before = relay.mail_commands

    relay.reject_next(451, "4.3.0 try later")
    since = doctor.mark(room)
    event = await doctor.send_text(room, "Résultats du bilan à transmettre au correspondant")
    message_id = message_id_for(event, DOMAIN)
    notice = await doctor.wait_for(
        room, reply_notice(bot, event, "↻ Pas encore remis"), since=since, timeout=TIMEOUT
    )
    assert "451 4.3.0 try later" in notice.body
    await doctor.wait_for(room, reply_notice(bot, event, "✓"), since=since, timeout=TIMEOUT)
    await outbox_job(stack)()
    assert relay.message_ids().count(message_id) == 1
    assert relay.mail_commands - before == 2  # the refused attempt, then the accepted one


async def test_permanent_refusal_fails_at_once_without_retry(
    mail_stack: Lab, doctor: NioPeer, alerts: AlertLog
) -> None:
    stack, lab = mail_stack
    assert stack.santeguard is not None
    bot, relay = stack.bot_mxid, relay_of(lab)
    room = await linked_room(stack, doctor)
    before = relay.mail_commands

    relay.reject_next(550, "5.1.1 user unknown")
    since = doctor.mark(room)
    event = await doctor.send_text(room, "Adressage du patient au service de cardiologie")
    message_id = message_id_for(event, DOMAIN)
    notice = await doctor.wait_for(
        room, reply_notice(bot, event, "✗ Échec"), since=since, timeout=TIMEOUT
    )
    assert CORRESPONDENT in notice.body and "550 5.1.1 user unknown" in notice.body

    # No retry: a retry would have run within NO_RETRY_WAIT; then one more run of the job.
    await asyncio.sleep(NO_RETRY_WAIT)
    await outbox_job(stack)()
    assert relay.mail_commands - before == 1
    assert message_id not in relay.message_ids()
    row = await outbox_row(stack, event)
    assert row is not None
    assert (row["status"], row["attempts"], row["last_code"]) == ("failed", 1, 550)
    assert not [e for e in doctor.events[room][since:] if reply_notice(bot, event, "↻")(e)]

    # The admins are told, and it is on record.
    assert alerts.matching("550 5.1.1 user unknown", message_id, CORRESPONDENT)
    audit = await stack.santeguard.audit.recent(50, room_id=room)
    failed = [a for a in audit if a.action == "mail.failed"]
    assert len(failed) == 1
    assert failed[0].details["message_id"] == message_id and failed[0].details["code"] == 550
    queue = await command(doctor, bot, room, "!sg mail queue", "✗")
    assert "550 5.1.1 user unknown" in queue


async def test_unlinking_stops_mail_still_waiting_for_the_relay(
    mail_stack: Lab, doctor: NioPeer
) -> None:
    """`!sg mail unlink` says nothing leaves any more: a mail queued to the wrong address
    while the relay was down must not go out when the relay comes back."""
    stack, lab = mail_stack
    assert stack.santeguard is not None
    bot, relay = stack.bot_mxid, relay_of(lab)
    room = await linked_room(stack, doctor)

    await relay.pause()
    try:
        since = doctor.mark(room)
        event = await doctor.send_text(room, "Message parti vers une adresse erronée")
        await doctor.wait_for(room, reply_notice(bot, event, "↻"), since=since, timeout=TIMEOUT)
        await command(doctor, bot, room, "!sg mail unlink", CORRESPONDENT)
        before = relay.mail_commands
    finally:
        await relay.resume()

    # Past the moment the retry was due, and one more run of the job: nothing is sent.
    row = await stack.santeguard.db.fetchrow(
        "SELECT due_at FROM mail_outbox WHERE event_id = $1", event
    )
    assert row is not None
    await asyncio.sleep(max(0.0, int(row["due_at"]) / 1000 - time.time()) + 1)
    await outbox_job(stack)()
    assert relay.mail_commands == before
    assert message_id_for(event, DOMAIN) not in relay.message_ids()
    done = await outbox_row(stack, event)
    assert done is not None and done["status"] == "cancelled"
    queue = await command(doctor, bot, room, "!sg mail queue", CORRESPONDENT)
    assert FR["mail.queue_cancelled"].format(to=CORRESPONDENT) in queue.splitlines()
    audit = await stack.santeguard.audit.recent(50, room_id=room)
    assert [e.details.get("cancelled") for e in audit if e.action == "mail.unlinked"] == [1]


async def test_failure_is_alerted_even_when_the_room_cannot_be_told(
    mail_stack: Lab, doctor: NioPeer, alerts: AlertLog
) -> None:
    """The bot was removed from the room while the mail waited: the room notice cannot be
    posted, and the admins must still hear of the failure."""
    stack, lab = mail_stack
    sg, bot, relay = stack.santeguard, stack.bot_mxid, relay_of(lab)
    assert sg is not None
    room = await linked_room(stack, doctor)
    told = alerts.mark()

    await relay.pause()
    try:
        since = doctor.mark(room)
        event = await doctor.send_text(room, "Compte rendu en attente du relais")
        await doctor.wait_for(room, reply_notice(bot, event, "↻"), since=since, timeout=TIMEOUT)
        kicked = await doctor.client.room_kick(room, bot, reason="plus besoin du robot")
        assert not isinstance(kicked, RoomKickError), kicked
        await _until(lambda: not sg.rooms.is_joined(room), what="the bot to be out")
        relay.reject_next(550, "5.1.1 user unknown")
    finally:
        await relay.resume()

    message_id = message_id_for(event, DOMAIN)

    async def failed() -> bool:
        row = await outbox_row(stack, event)
        return row is not None and row["status"] == "failed"

    await _until(failed, what="the permanent failure")
    await _until(
        lambda: alerts.matching("550 5.1.1 user unknown", message_id, since=told),
        what="the failure alert",
    )


# -- the worker sends only what it still holds (both databases, no servers) -----------


class _Relay:
    """A relay stand-in that accepts everything; ``during`` runs inside the first send."""

    def __init__(self, during: Callable[[], Awaitable[object]] | None = None) -> None:
        self.sent: list[bytes] = []
        self._during = during

    async def send(self, raw: bytes, recipients: Sequence[str]) -> SendResult:
        self.sent.append(raw)
        during, self._during = self._during, None
        if during is not None:
            await during()
        return SendResult("sent", 250, "2.0.0 OK", None)


class _NoEvents:
    async def delivered(self, mail: Claimed, result: SendResult) -> None:
        pass

    async def retrying(self, mail: Claimed, result: SendResult, delay_s: float) -> None:
        pass

    async def failed(self, mail: Claimed, result: SendResult, *, gave_up: bool) -> None:
        pass


async def _queue(db: Database, room: str, *names: str) -> None:
    async with write_transaction(db) as conn:
        for name in names:
            mail = QueuedMail(f"${name}", room, f"<{name}@t>", "@d:t", CORRESPONDENT, name.encode())
            assert await OutboxStore.enqueue(conn, mail)


async def _statuses(db: Database) -> dict[str, str]:
    rows = await db.fetch("SELECT event_id, status FROM mail_outbox")
    return {str(r["event_id"]).lstrip("$"): str(r["status"]) for r in rows}


async def test_unlink_during_a_batch_stops_the_rest_of_it(db: Database) -> None:
    """`!sg mail unlink` while the worker is sending a claimed batch: what was not sent
    yet is not sent (the mail on the wire when it came is the relay's already)."""
    store = OutboxStore(db)
    await _queue(db, "!a:t", "a0", "a1", "a2")
    await _queue(db, "!b:t", "b0")
    relay = _Relay(during=lambda: store.cancel("!a:t"))
    await OutboxWorker(store, relay, _NoEvents(), RetrySchedule(base_seconds=1)).run_due()
    assert relay.sent == [b"a0", b"b0"]
    assert await _statuses(db) == {
        "a0": "sent",
        "a1": "cancelled",
        "a2": "cancelled",
        "b0": "sent",
    }


async def test_a_lease_that_ran_out_is_not_used_and_one_half_spent_is_renewed(
    db: Database,
) -> None:
    store = OutboxStore(db, lease_ms=1000)
    await _queue(db, "!a:t", "m0", "m1")
    first, second = await store.claim(10)
    assert await store.hold(first)  # fresh: still ours
    await asyncio.sleep(0.6)
    assert await store.hold(first)  # past half: renewed...
    await asyncio.sleep(0.5)
    # ...so another worker cannot take it; the other lease ran out and it can.
    assert [c.event_id for c in await store.claim(10)] == [second.event_id]
    assert not await store.hold(second)  # ours no more: another worker may be sending it


# -- who may write outside (both databases) --------------------------------------------


async def test_only_verified_practitioners_messages_leave(mail_stack: Lab, doctor: NioPeer) -> None:
    """An unverified member of a linked room (protection off, so the gate lets them in) is
    not mailed and the room is told why; the verified practitioner's message leaves."""
    stack, lab = mail_stack
    sg, bot, relay = stack.santeguard, stack.bot_mxid, relay_of(lab)
    assert sg is not None
    room = await linked_room(stack, doctor)
    # What `!sg room protect off` by a network admin stores (the command needs the admin in
    # the room, which a protected room does not let an unverified admin into).
    await sg.room_policies.set_room(room, RoomPolicy(protected=False), "@admin:santeguard.test")
    guest_user, guest = await stack.user(f"guest{time.monotonic_ns() % 10_000_000}")
    invited = await doctor.client.room_invite(room, guest_user.user_id)
    assert not isinstance(invited, RoomInviteError), invited

    since = doctor.mark(room)
    async with guest:
        await guest.join(room)
        unverified = await guest.send_text(room, "Message d'un compte non vérifié vers dehors")
        refused = await doctor.wait_for(
            room,
            reply_notice(bot, unverified, FR["mail.not_verified"].split("{user}")[0]),
            since=since,
            timeout=TIMEOUT,
        )
    assert guest_user.user_id in refused.body
    verified = await doctor.send_text(room, "Message du médecin vérifié vers dehors")
    await doctor.wait_for(room, reply_notice(bot, verified, "✓"), since=since, timeout=TIMEOUT)

    assert relay.message_ids().count(message_id_for(verified, DOMAIN)) == 1
    assert message_id_for(unverified, DOMAIN) not in relay.message_ids()
    assert await outbox_row(stack, unverified) is None
    audit = await sg.audit.recent(50, room_id=room)
    not_sent = [(e.actor, e.details["reason"]) for e in audit if e.action == "mail.not_sent"]
    assert not_sent == [(guest_user.user_id, "not_verified")]


# -- TLS problems, each in a SantéGuard configured for it (SQLite) ---------------------


@dataclass
class Broken:
    """A SantéGuard with a certificate or relay problem, and the relay it points at."""

    stack: DevStack
    relay: RelayServer
    expected: dict[str, str]  # channel -> problem code
    client_cert: Path


FAILING = {
    # Our certificate expired: seen locally, and the relay refuses the handshake.
    "expired_client_cert": {"certificate": "client_cert_expired", "smtp": "client_cert_refused"},
    # The relay's certificate chains to another CA than the pinned one.
    "foreign_ca": {"smtp": "unknown_ca"},
    # The relay offers no STARTTLS: nothing may be said in clear.
    "no_starttls": {"smtp": "no_starttls"},
}
# A certificate expiring within 30 days: a warning, mail still flows.
EXPIRING = {"certificate": "client_cert_expires_soon"}


def issue_client_cert(pki: Pki, directory: Path, days: float) -> tuple[Path, Path]:
    """A client certificate from the test CA (same subject) expiring in ``days``."""
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    client = x509.load_pem_x509_certificate(pki.client_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(client.subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "expiring.crt", directory / "expiring.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def not_after(path: Path) -> float:
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc.timestamp()


@pytest.fixture(scope="module")
async def broken(
    tmp_path_factory: pytest.TempPathFactory, alerts: AlertLog
) -> AsyncIterator[dict[str, Broken]]:
    """One mail service, four SantéGuards (with their homeservers) started together, each
    with a relay of its own so what reaches a relay is that SantéGuard's doing."""
    workdir = tmp_path_factory.mktemp("mail-broken")
    lab = MailLab(workdir / "mail")
    await lab.start()
    assert lab.pki is not None
    pki = lab.pki
    relays = {
        "expired_client_cert": RelayServer(pki),
        "foreign_ca": RelayServer(
            pki, server_cert=(pki.foreign_server_cert, pki.foreign_server_key)
        ),
        "no_starttls": RelayServer(pki, mode="plain"),
    }
    stacks: dict[str, DevStack] = {}
    try:
        for relay in relays.values():
            await relay.start()
        relays["expiring_client_cert"] = relay_of(lab)  # delivers like the real one
        expiring = issue_client_cert(pki, workdir, days=10)
        certs = {
            "expired_client_cert": (pki.expired_client_cert, pki.expired_client_key),
            "expiring_client_cert": expiring,
        }
        for name, relay in relays.items():
            cert, key = certs.get(name, (pki.client_cert, pki.client_key))
            mail = lab.mail_config(smtp_port=relay.port, client_cert=str(cert), client_key=str(key))
            stacks[name] = DevStack(
                workdir / name,
                db_uri=f"sqlite:///{workdir / name / 'santeguard.db'}",
                admins=["@admin:santeguard.test"],
                config_overrides={"mail": mail},
            )
        started = await asyncio.gather(
            *(s.start() for s in stacks.values()), return_exceptions=True
        )
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        yield {
            name: Broken(
                stacks[name],
                relay,
                FAILING.get(name, EXPIRING),
                certs.get(name, (pki.client_cert, pki.client_key))[0],
            )
            for name, relay in relays.items()
        }
    finally:
        await asyncio.gather(*(s.stop() for s in stacks.values()), return_exceptions=True)
        for name, relay in relays.items():
            if name != "expiring_client_cert":
                await relay.stop()
        await lab.stop()


async def until_reported(b: Broken) -> None:
    """The probe (run at start) has reported the stack's expected problems."""
    assert b.stack.santeguard is not None and b.stack.santeguard.mail.health is not None
    health = b.stack.santeguard.mail.health
    await _until(
        lambda: all(health.problem(c) == p for c, p in b.expected.items()),
        what=f"the probe to report {b.expected}",
    )


def status_line(channel: str, problem: str) -> str:
    return FR["mail.status_problem"].format(channel=channel, problem=FR[f"mail.problem.{problem}"])


def alert_text(channel: str, problem: str) -> str:
    return FR[f"alert.mail_problem.{problem}"].format(channel=channel)


@pytest.mark.parametrize("case", list(FAILING))
async def test_tls_problem_is_reported_everywhere_and_nothing_leaves(
    broken: dict[str, Broken], case: str, alerts: AlertLog, tmp_path: Path
) -> None:
    b = broken[case]
    stack, bot, expected = b.stack, b.stack.bot_mxid, b.expected
    await until_reported(b)

    # A practitioner's message: kept in the queue, the room told why.
    peer = await new_doctor(stack, tmp_path / "doc", time.monotonic_ns() % 10_000_000)
    try:
        room = await linked_room(stack, peer)
        since = peer.mark(room)
        event = await peer.send_text(room, "Courrier de liaison pour le correspondant")
        notice = await peer.wait_for(
            room, reply_notice(bot, event, "↻ Pas encore remis"), since=since, timeout=TIMEOUT
        )
        assert FR[f"mail.problem.{expected['smtp']}"] in notice.body
        status = await command(peer, bot, room, "!sg mail status", "⚠")
        for channel, problem in expected.items():
            assert status_line(channel, problem) in status.splitlines()
        row = await outbox_row(stack, event)
        assert row is not None
        assert (row["status"], row["problem"]) == ("pending", expected["smtp"])
    finally:
        await peer.stop()

    # /ready and the metrics name the problem; the admins were told once per change.
    api = endpoints(stack)
    code, ready = await api.ready()
    # Reported, not unready: the gate is served by the same process and must stay up.
    assert code == 200 and ready["mail"]["ok"] is False
    for channel, problem in expected.items():
        assert ready["mail"]["problems"][channel] == problem
    assert ready["checks"]["database"] is True
    problems = await api.mail_problems()
    for channel, problem in expected.items():
        assert problems[(channel, problem)] == 1.0
    if "certificate" not in expected:
        assert not [k for k, v in problems.items() if k[0] == "certificate" and v]
    assert await api.client_cert_expiry() == not_after(b.client_cert)
    for channel, problem in expected.items():
        assert len(alerts.matching(alert_text(channel, problem))) == 1, alerts.texts

    # Nothing reached the relay's MAIL command: in particular never in clear.
    assert b.relay.mail_commands == 0
    assert b.relay.messages == []


async def test_client_cert_expiring_soon_is_a_warning_and_mail_flows(
    broken: dict[str, Broken], alerts: AlertLog, tmp_path: Path
) -> None:
    b = broken["expiring_client_cert"]
    stack, bot = b.stack, b.stack.bot_mxid
    await until_reported(b)
    peer = await new_doctor(stack, tmp_path / "doc", time.monotonic_ns() % 10_000_000)
    try:
        room = await linked_room(stack, peer)
        since = peer.mark(room)
        event = await peer.send_text(room, "Courrier envoyé avec un certificat bientôt expiré")
        await peer.wait_for(room, reply_notice(bot, event, "✓"), since=since, timeout=TIMEOUT)
        status = await command(peer, bot, room, "!sg mail status", "⚠")
        assert status_line("certificate", "client_cert_expires_soon") in status.splitlines()
    finally:
        await peer.stop()
    assert b.relay.message_ids().count(message_id_for(event, DOMAIN)) == 1

    api = endpoints(stack)
    code, ready = await api.ready()
    assert (code, ready["mail"]["ok"]) == (200, True)
    problems = await api.mail_problems()
    assert problems[("certificate", "client_cert_expires_soon")] == 1.0
    assert await api.client_cert_expiry() == not_after(b.client_cert)
    assert len(alerts.matching(alert_text("certificate", "client_cert_expires_soon"))) == 1
