"""Outbound delivery end to end, from a practitioner's Matrix message to the relay: what
the room, the queue, the admins, ``/ready`` and the metrics see when the relay is down,
answers 4xx or 5xx, or when TLS cannot be set up (expired client certificate, a relay
certificate from a foreign CA, a relay offering no STARTTLS); and that only verified
practitioners' messages leave.

Real servers throughout: Synapse, SantéGuard, the aiosmtpd relay (STARTTLS + client
certificates) and Dovecot. The linked-room cases run on both databases (``mail_stack``);
the configuration problems need SantéGuards of their own and run on SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nio import RoomInviteError, RoomMessageNotice
from prometheus_client.parser import text_string_to_metric_families

from bridge.devtools.maillab import CORRESPONDENT, MailLab
from bridge.devtools.mailserver import RelayServer
from bridge.devtools.nio_peer import NioPeer, notice_from
from bridge.devtools.people import practitioner
from bridge.devtools.stack import DevStack
from bridge.gate.policy import RoomPolicy
from bridge.mail.policy import message_id_for
from bridge.mail.text import CATALOG

pytestmark = pytest.mark.synapse

Lab = tuple[DevStack, MailLab]
DOMAIN = "cpts.mssante.test"
FR = CATALOG["fr"]
TIMEOUT = 30.0
# mail_config(): retry_base_seconds=1. A retry the worker wrongly scheduled would run
# after 1 s; waiting three times that leaves no room for one to hide.
NO_RETRY_WAIT = 3.0


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

    async def mail_problems(self) -> dict[tuple[str, str], float]:
        """``santeguard_mail_problem`` samples, by (channel, problem)."""
        async with aiohttp.ClientSession() as http, http.get(f"{self.base}/metrics") as resp:
            text = await resp.text()
        out: dict[tuple[str, str], float] = {}
        for family in text_string_to_metric_families(text):
            if family.name == "santeguard_mail_problem":
                for sample in family.samples:
                    out[(sample.labels["channel"], sample.labels["problem"])] = sample.value
        return out


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
    """A SantéGuard whose relay connection cannot be set up, and the relay it points at."""

    stack: DevStack
    relay: RelayServer
    expected: dict[str, str]  # channel -> problem code


EXPECTED = {
    # Our certificate expired: seen locally, and the relay refuses the handshake.
    "expired_client_cert": {"certificate": "client_cert_expired", "smtp": "client_cert_refused"},
    # The relay's certificate chains to another CA than the pinned one.
    "foreign_ca": {"smtp": "unknown_ca"},
    # The relay offers no STARTTLS: nothing may be said in clear.
    "no_starttls": {"smtp": "no_starttls"},
}


@pytest.fixture(scope="module")
async def broken(
    tmp_path_factory: pytest.TempPathFactory, alerts: AlertLog
) -> AsyncIterator[dict[str, Broken]]:
    """One mail service, three SantéGuards (with their homeservers), started together."""
    workdir = tmp_path_factory.mktemp("mail-broken")
    lab = MailLab(workdir / "mail")
    await lab.start()
    assert lab.pki is not None
    pki = lab.pki
    foreign = RelayServer(pki, server_cert=(pki.foreign_server_cert, pki.foreign_server_key))
    plain = RelayServer(pki, mode="plain")
    stacks: dict[str, DevStack] = {}
    try:
        await foreign.start()
        await plain.start()
        setups = {
            "expired_client_cert": (
                relay_of(lab),
                lab.mail_config(
                    client_cert=str(pki.expired_client_cert),
                    client_key=str(pki.expired_client_key),
                ),
            ),
            "foreign_ca": (foreign, lab.mail_config(smtp_port=foreign.port)),
            "no_starttls": (plain, lab.mail_config(smtp_port=plain.port)),
        }
        for name, (_, mail) in setups.items():
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
            name: Broken(stacks[name], relay, EXPECTED[name]) for name, (relay, _) in setups.items()
        }
    finally:
        await asyncio.gather(*(s.stop() for s in stacks.values()), return_exceptions=True)
        await plain.stop()
        await foreign.stop()
        await lab.stop()


@pytest.mark.parametrize("case", list(EXPECTED))
async def test_tls_problem_is_reported_everywhere_and_nothing_leaves(
    broken: dict[str, Broken], case: str, alerts: AlertLog, tmp_path: Path
) -> None:
    b = broken[case]
    stack, bot, expected = b.stack, b.stack.bot_mxid, b.expected
    assert stack.santeguard is not None and stack.santeguard.mail.health is not None
    health = stack.santeguard.mail.health
    await _until(
        lambda: all(health.problem(c) == p for c, p in expected.items()),
        what=f"the probe to report {expected}",
    )

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
            line = FR["mail.status_problem"].format(
                channel=channel, problem=FR[f"mail.problem.{problem}"]
            )
            assert line in status.splitlines()
        row = await outbox_row(stack, event)
        assert row is not None
        assert (row["status"], row["problem"]) == ("pending", expected["smtp"])
    finally:
        await peer.stop()

    # /ready and the metrics name the problem; the admins were told once per change.
    api = endpoints(stack)
    code, ready = await api.ready()
    assert code == 503 and ready["checks"]["mail"] is False
    assert ready["checks"]["database"] is True
    problems = await api.mail_problems()
    for channel, problem in expected.items():
        assert problems[(channel, problem)] == 1.0
    if "certificate" not in expected:
        assert not [k for k, v in problems.items() if k[0] == "certificate" and v]
    for channel, problem in expected.items():
        alert = FR[f"alert.mail_problem.{problem}"].format(channel=channel)
        assert len(alerts.matching(alert)) == 1, (alert, alerts.texts)

    # Nothing reached the relay's MAIL command: in particular never in clear.
    assert b.relay.mail_commands == 0
    assert b.relay.messages == []
