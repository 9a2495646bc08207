"""The secure-mail servers down for a while, seen from outside: SantéGuard stays ready,
reports the outage (``/ready``'s body, ``santeguard_dependency_up``, the admin alerts
after the threshold and at recovery, with the duration), keeps what waits, and catches
up with nothing lost or doubled.

- SMTP relay down (the aiosmtpd relay stops listening, as a crashed relay): the
  practitioner's messages wait in the outbox; once the relay is back each is delivered
  once, with its own Message-ID. About 20 s down in ``make test``; ten minutes with a
  message every 5 s under ``SANTEGUARD_LONG_TESTS=1``, which also bounds the memory
  growth (tests/reliability/outage_kit.py).
- IMAP server (Dovecot) stopped, then started: the inbox watcher reconnects by itself
  and the replies that arrived just before and after are each posted once (2.5 minutes
  down in the long mode). Restarts during a stream of mails
  (nothing lost, nothing doubled) are tests/mail/test_crash.py's.

Here rather than in tests/reliability/: it needs the session's mail stack
(tests/mail/conftest.py), which a second fixture elsewhere would start again.
"""

from __future__ import annotations

import asyncio
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from bridge.devtools.maillab import MailLab
from bridge.devtools.nio_peer import NioPeer
from bridge.devtools.stack import DevStack
from bridge.mail.policy import message_id_for
from bridge.ops.text import CATALOG
from tests.mail.test_delivery import DOMAIN, linked_room, new_doctor, relay_of
from tests.reliability.outage_kit import (
    LONG,
    Endpoints,
    Memory,
    alert_log,
    figure,
    fragment,
    until,
)

pytestmark = pytest.mark.synapse

Lab = tuple[DevStack, MailLab]
FR = CATALOG["fr"]
SMTP_DOWN_SECONDS = 600.0 if LONG else 20.0
IMAP_DOWN_SECONDS = 150.0 if LONG else 0.0  # beyond the time to see it and alert
MESSAGE_EVERY = 5.0  # seconds between two messages during the outage
ALERT_AFTER = 1.0  # outages.alert_after here (60 s in production)
DOWN_SMTP = fragment(FR["alert.outage_down.smtp"])
DOWN_IMAP = fragment(FR["alert.outage_down.imap"])
UP_IMAP = fragment(FR["alert.outage_up.imap"])
EARLY = "Réponse arrivée juste avant la panne du serveur IMAP"
LATE = "Réponse arrivée après le retour du serveur IMAP"


def endpoints(stack: DevStack) -> Endpoints:
    return Endpoints(
        f"http://127.0.0.1:{stack.as_port}",
        hs_token=stack.hs_token,
        gate_token=stack.gate_token,
        gate_path=stack.config().antispam.path,
    )


async def _up(api: Endpoints, dependency: str, up: bool) -> bool:
    value = await api.metric("santeguard_dependency_up", dependency=dependency)
    return value == (1.0 if up else 0.0)


async def _sent(stack: DevStack, events: list[str]) -> bool:
    assert stack.santeguard is not None
    rows = await stack.santeguard.db.fetch("SELECT event_id, status FROM mail_outbox")
    status = {r["event_id"]: r["status"] for r in rows}
    return all(status.get(e) == "sent" for e in events)


@pytest.mark.parametrize("mail_stack", ["sqlite"], indirect=True)
async def test_smtp_relay_down_then_back(mail_stack: Lab, tmp_path: Path) -> None:
    stack, lab = mail_stack
    sg = stack.santeguard
    assert sg is not None
    relay = relay_of(lab)
    doctor: NioPeer = await new_doctor(stack, tmp_path / "doc", time.monotonic_ns() % 10**7)
    saved = sg.outages.alert_after
    sg.outages.alert_after = ALERT_AFTER
    api = endpoints(stack)
    memory = Memory("smtp relay down")
    events: list[str] = []
    try:
        room = await linked_room(stack, doctor)
        with alert_log() as alerts:
            memory.sample("before")
            await relay.pause()
            down_at = time.monotonic()
            try:
                while time.monotonic() - down_at < SMTP_DOWN_SECONDS:
                    n = len(events)
                    events.append(await doctor.send_text(room, f"Avis pendant la panne {n}"))
                    if n == 0:
                        await until(lambda: _up(api, "smtp", False), "the relay seen down")
                        status, body = await api.ready()
                        # The gate is served by the same process: a mail outage is
                        # reported beside the checks, never as unready.
                        assert status == 200, body
                        assert body["dependencies"]["smtp"]["up"] is False
                        assert body["dependencies"]["smtp"]["detail"] == "unreachable"
                        await until(lambda: _async(alerts.matching(DOWN_SMTP)), "the down alert")
                    await asyncio.sleep(MESSAGE_EVERY)
                assert sg.db is not None
                waiting = await sg.db.fetchval(
                    "SELECT count(*) FROM mail_outbox WHERE status = 'pending'"
                )
                assert waiting >= len(events)
                assert not {message_id_for(e, DOMAIN) for e in events} & set(relay.message_ids())
                memory.sample("during")
            finally:
                await relay.resume()
            back_at = time.monotonic()
            await until(lambda: _sent(stack, events), "every waiting mail sent", 120)
            figure(
                "smtp: all sent after the relay is back (s)", round(time.monotonic() - back_at, 1)
            )
            await until(lambda: _up(api, "smtp", True), "the relay seen up")
            back = fragment(FR["alert.outage_up.smtp"])
            await until(lambda: _async(alerts.matching(back)), "the recovery alert")
            ids = [message_id_for(e, DOMAIN) for e in events]
            received = relay.message_ids()
            assert all(received.count(i) == 1 for i in ids), "a mail lost or sent twice"
            assert len(set(ids)) == len(ids)
            figure("smtp: mails held then delivered", len(ids))
            memory.sample("after")
        memory.check()
    finally:
        memory.close()
        sg.outages.alert_after = saved
        await doctor.stop()
        await api.close()


async def _async(value: object) -> object:
    return value


def _outside(lab: MailLab, message_id: str) -> EmailMessage | None:
    return next((m for m in lab.outside() if str(m["Message-ID"]) == message_id), None)


@pytest.mark.parametrize("mail_stack", ["sqlite"], indirect=True)
async def test_imap_server_down_then_back(mail_stack: Lab, tmp_path: Path) -> None:
    stack, lab = mail_stack
    sg = stack.santeguard
    assert sg is not None and lab.dovecot is not None
    doctor: NioPeer = await new_doctor(stack, tmp_path / "doc", time.monotonic_ns() % 10**7)
    saved = sg.outages.alert_after
    sg.outages.alert_after = ALERT_AFTER
    api = endpoints(stack)
    memory = Memory("imap server down")
    try:
        room = await linked_room(stack, doctor)
        event = await doctor.send_text(room, "Question au correspondant avant la panne IMAP")
        original = await until(
            lambda: _async(_outside(lab, message_id_for(event, DOMAIN))), "the mail out"
        )
        with alert_log() as alerts:
            memory.sample("before")
            # A reply lands just before the server goes: fetched before or after, once.
            await lab.reply(original, EARLY)
            await lab.dovecot.pause()
            try:
                await until(lambda: _up(api, "imap", False), "the IMAP server seen down")
                status, body = await api.ready()
                assert status == 200, body  # reported beside the checks, not unready
                assert body["dependencies"]["imap"]["up"] is False
                await until(lambda: _async(alerts.matching(DOWN_IMAP)), "the down alert")
                await asyncio.sleep(IMAP_DOWN_SECONDS)
                memory.sample("during")
            finally:
                await lab.dovecot.resume()
            await until(lambda: _up(api, "imap", True), "the IMAP server seen up")
            await until(lambda: _async(alerts.matching(UP_IMAP)), "the recovery alert")
            await lab.reply(original, LATE)
            for text in (EARLY, LATE):
                await until(lambda t=text: _async(_seen(doctor, room, t)), "the replies posted")
            await asyncio.sleep(2)  # poll_seconds is 1: a second fetch would show by now
            assert _seen(doctor, room, EARLY) == _seen(doctor, room, LATE) == 1
            memory.sample("after")
        memory.check()
    finally:
        memory.close()
        sg.outages.alert_after = saved
        await doctor.stop()
        await api.close()


def _seen(peer: NioPeer, room: str, text: str) -> int:
    """How many of the room's events carry ``text`` (the ghost's posts, decrypted)."""
    return sum(1 for e in peer.events.get(room, []) if text in str(getattr(e, "body", "")))
