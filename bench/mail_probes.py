"""What the mail benchmark measures with, besides SantéGuard: timestamps and bare baselines.

- ``Accepts``: the relay's DATA hook, stamping each accepted Message-ID (``perf_counter``,
  the same monotonic clock in every process of the machine);
- ``BareSmtp``: the bare transport, aiosmtplib over one STARTTLS + client-certificate
  connection to the same relay;
- ``BareIdle``: a bare aioimaplib client in IDLE on the same mailbox, noting when it is
  told of new mail (EXISTS) and when it has fetched it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aioimaplib
import aiosmtplib

from bridge.devtools.maillab import MailLab
from bridge.mail.tls import TlsFiles, client_context

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)
_EXISTS = re.compile(rb"^(\d+) EXISTS")

Deliver = Callable[[bytes, str, list[str]], Awaitable[None]]


def message_id(raw: bytes) -> str:
    head = raw.split(b"\r\n\r\n", 1)[0]
    match = _MESSAGE_ID.search(head)
    return match.group(1).decode() if match else ""


class Accepts:
    """Wraps the lab relay's delivery hook: when did the relay accept each Message-ID."""

    def __init__(self, lab: MailLab) -> None:
        assert lab.relay is not None
        self.times: dict[str, float] = {}
        self.raws: dict[str, bytes] = {}
        self.gate: asyncio.Event | None = None  # while set and closed, DATA waits: a hold
        self.held = 0.0  # when the first held mail came
        self._waiters: dict[str, asyncio.Future[float]] = {}
        self._route: Deliver | None = lab.relay.deliver
        lab.relay.deliver = self._deliver

    async def _deliver(self, data: bytes, mail_from: str, rcpts: list[str]) -> None:
        gate = self.gate
        if gate is not None and not gate.is_set():
            self.held = self.held or time.perf_counter()
            await gate.wait()
        now = time.perf_counter()
        if self._route is not None:
            await self._route(data, mail_from, rcpts)
        mid = message_id(data)
        self.times[mid] = now
        self.raws[mid] = data
        waiter = self._waiters.pop(mid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(now)

    def fresh(self, mid: str, tag: str, domain: str) -> bytes:
        """The mail accepted as ``mid``, under a new Message-ID (for the bare runs)."""
        new = f"<{tag}.{secrets.token_hex(8)}@{domain}>"
        return self.raws[mid].replace(mid.encode(), new.encode(), 1)

    async def wait(self, mid: str, timeout: float = 60) -> float:
        if mid in self.times:
            return self.times[mid]
        waiter = self._waiters.setdefault(mid, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(waiter, timeout)


def _context(lab: MailLab) -> Any:
    assert lab.pki is not None
    return client_context(TlsFiles(lab.pki.ca_cert, lab.pki.client_cert, lab.pki.client_key))


class BareSmtp:
    """One kept aiosmtplib connection (STARTTLS, client certificate): the bare transport."""

    def __init__(self, lab: MailLab, sender: str) -> None:
        assert lab.relay is not None
        self._client = aiosmtplib.SMTP(
            hostname="localhost", port=lab.relay.port, start_tls=True, tls_context=_context(lab)
        )
        self._sender = sender

    async def start(self) -> None:
        await self._client.connect()
        await self._client.ehlo()

    async def send(self, raw: bytes, recipient: str) -> None:
        await self._client.sendmail(self._sender, [recipient], raw)

    async def close(self) -> None:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await self._client.quit()
        self._client.close()


class BareIdle:
    """A bare IMAP IDLE client: ``notified`` and ``fetched`` list the perf_counter times."""

    def __init__(self, lab: MailLab) -> None:
        assert lab.dovecot is not None
        self._lab = lab
        self._client = aioimaplib.IMAP4_SSL(
            "localhost", lab.dovecot.imap_port, ssl_context=_context(lab), timeout=30
        )
        self.notified: list[float] = []
        self.fetched: list[float] = []
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        dovecot = self._lab.dovecot
        assert dovecot is not None
        await self._client.wait_hello_from_server()
        login = await self._client.login(dovecot.user, self._lab.password)
        if login.result != "OK":
            raise RuntimeError("bare IMAP client: login refused")
        await self._client.select("INBOX")
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        client = self._client
        while True:
            idle = await client.idle_start(timeout=120)
            newest = 0
            while client.has_pending_idle():
                push = await client.wait_server_push()
                counts = [int(m.group(1)) for line in push if (m := _EXISTS.match(bytes(line)))]
                if counts:
                    self.notified.append(time.perf_counter())
                    newest = max(counts)
                    client.idle_done()
                    break
                if push == aioimaplib.STOP_WAIT_SERVER_PUSH:
                    break
            await asyncio.wait_for(idle, 30)
            if newest:
                response = await client.fetch(str(newest), "(BODY.PEEK[])")
                if response.result == "OK":
                    self.fetched.append(time.perf_counter())
            self.changed.set()

    async def wait_fetched(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.fetched) < count:
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the bare IMAP client saw nothing")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._client.logout(), 5)
