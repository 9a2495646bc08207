"""The MSSanté mailbox over IMAP: implicit TLS with our client certificate, UIDs, IDLE.

aioimaplib has no STARTTLS, so only implicit TLS (993) is offered. Every connection,
TLS or login failure surfaces as ``MailboxUnavailable(code)`` so the caller can alert
an admin with a precise reason and reconnect later; nothing here retries by itself.

Two aioimaplib habits are worked around (per connection, no global patching):

- it never notices a dropped connection: pending commands would wait for their timeout
  (IDLE, forever). The protocol's ``conn_lost_cb`` sets an event that every call races.
- it drops untagged ``EXISTS`` responses that arrive during SEARCH or FETCH. Dovecot
  reports new mail once, at the end of whichever command runs, so a mail landing while
  the bridge fetches would stay unseen until IDLE timed out. A hook on the protocol's
  untagged-response handler records every ``EXISTS``: ``wait`` returns at once after
  one, and ``uids_after`` searches again when one came with its own reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aioimaplib

from bridge.mail.tls import TlsConfigError, TlsFiles, client_context, diagnose

__all__ = ["ImapMailbox", "ImapSettings", "MailboxUnavailable", "MessageNotFound"]

T = TypeVar("T")

_EXISTS_RE = re.compile(rb"^\* \d+ EXISTS\s*$")
_UIDVALIDITY_RE = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_FETCH_UID_RE = re.compile(rb"\bUID (\d+)\b")
_CERT_REFUSAL_RE = re.compile(rb"certificate", re.IGNORECASE)
_LOGOUT_TIMEOUT = 5.0
_SEARCH_ROUNDS = 3


class MailboxUnavailable(Exception):
    """The mailbox cannot be used now; ``problem`` is a code (tls.diagnose's, or
    "login_refused", "client_cert_refused", "folder_unavailable", "server_error")."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class MessageNotFound(LookupError):
    """The UID names no message (expunged meanwhile, or never existed)."""

    def __init__(self, uid: int) -> None:
        super().__init__(f"no message with UID {uid}")
        self.uid = uid


@dataclass(frozen=True)
class ImapSettings:
    """Where the mailbox is and how to log in (implicit TLS only)."""

    host: str
    port: int
    tls: TlsFiles
    username: str
    password: str = field(repr=False)
    folder: str = "INBOX"
    timeout: float = 30
    idle_seconds: float = 300
    poll_seconds: float = 60  # servers without IDLE: NOOP this often


@dataclass
class _Session:
    """One connection's client and the signals its hooks raise."""

    client: Any
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    lost_error: Exception | None = None
    new_mail: asyncio.Event = field(default_factory=asyncio.Event)

    def problem(self) -> str:
        """Why the connection is gone: a TLS alert names the refusal, else "unreachable"."""
        if isinstance(self.lost_error, ssl.SSLError):
            return diagnose(self.lost_error)
        return "unreachable"


def _hook(session: _Session) -> None:
    """Wire connection loss and every untagged EXISTS of ``session`` to its events."""
    protocol = session.client.protocol
    handle_untagged: Callable[[bytes], Any] = protocol._untagged_response

    def untagged(line: bytes) -> Any:
        if _EXISTS_RE.match(line):
            session.new_mail.set()
        return handle_untagged(line)

    def lost(exc: Exception | None) -> None:
        session.lost_error = exc
        session.lost.set()

    protocol._untagged_response = untagged
    protocol.conn_lost_cb = lost


def _text(lines: list[Any]) -> bytes:
    return b" ".join(bytes(line) for line in lines if isinstance(line, bytes))


class ImapMailbox:
    """A selected IMAP folder, read by UID; one connection, reopened by ``connect``."""

    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        self._session: _Session | None = None
        self.uidvalidity: int | None = None

    async def connect(self) -> int:
        """(Re)connect, log in and select the folder; return its UIDVALIDITY."""
        await self.close()
        try:
            context = client_context(self.settings.tls)
        except TlsConfigError as e:
            raise MailboxUnavailable(e.reason) from None
        client = aioimaplib.IMAP4_SSL(
            self.settings.host,
            self.settings.port,
            ssl_context=context,
            timeout=self.settings.timeout,
        )
        session = _Session(client)
        _hook(session)
        self._session = session
        try:
            await self._greeting(session)
            await self._login(session)
            self.uidvalidity = await self._select(session)
        except BaseException:
            await self.close()
            raise
        session.new_mail.clear()
        return self.uidvalidity

    async def uids_after(self, uid: int) -> list[int]:
        """UIDs greater than ``uid``, ascending."""
        session = self._current()
        found: set[int] = set()
        for _ in range(_SEARCH_ROUNDS):
            # Dovecot searches the view as of the previous command and announces mail that
            # arrived since with an EXISTS at the end of this reply: search again then.
            session.new_mail.clear()  # whatever arrives from now on makes ``wait`` return
            # "N:*" always matches the highest UID, even when it is below N: filter.
            response = await self._call(
                session, session.client.uid_search(f"UID {uid + 1}:*", charset=None)
            )
            self._check(response, "server_error")
            for line in response.lines[:-1]:
                found.update(int(token) for token in bytes(line).split() if token.isdigit())
            if not session.new_mail.is_set():
                break
        return sorted(u for u in found if u > uid)

    async def fetch(self, uid: int) -> bytes:
        """The message exactly as stored (``BODY.PEEK[]``: the \\Seen flag is left alone)."""
        session = self._current()
        response = await self._call(session, session.client.uid("fetch", str(uid), "(BODY.PEEK[])"))
        self._check(response, "server_error")
        lines = response.lines
        for index, line in enumerate(lines[:-1]):
            if not isinstance(line, bytes) or b"BODY[]" not in line:
                continue
            match = _FETCH_UID_RE.search(line)
            literal = lines[index + 1]
            if match and int(match.group(1)) == uid and isinstance(literal, bytearray):
                return bytes(literal)
        raise MessageNotFound(uid)

    async def wait(self, timeout: float) -> None:
        """Return when new mail may have arrived, or after ``timeout`` (IDLE, else polling)."""
        session = self._current()
        timeout = min(timeout, self.settings.idle_seconds)
        try:
            if session.new_mail.is_set():
                return
            if not session.client.has_capability("IDLE"):
                pause = min(timeout, self.settings.poll_seconds)
                await self._call(session, asyncio.sleep(pause), pause + 1)
                self._check(await self._call(session, session.client.noop()), "server_error")
                return
            await self._idle(session, timeout)
        finally:
            session.new_mail.clear()

    async def close(self) -> None:
        """Log out politely if possible and drop the connection; never raises."""
        session, self._session = self._session, None
        if session is None:
            return
        client = session.client
        if not session.lost.is_set() and client.get_state() in ("AUTH", "SELECTED"):
            with contextlib.suppress(Exception):
                if client.has_pending_idle():
                    # A wait cancelled mid-IDLE (shutdown): aioimaplib queues LOGOUT behind
                    # the IDLE, which ends only on DONE, so stopping took the whole timeout.
                    client.idle_done()
                await asyncio.wait_for(client.logout(), _LOGOUT_TIMEOUT)
        transport = client.protocol.transport
        if transport is not None:
            transport.close()
        # aioimaplib's own tasks (connection, IDLE) may wait forever on a dead connection.
        tasks = [getattr(client, "_client_task", None), *client.tasks, *client.protocol.tasks]
        for task in tasks:
            if task is not None and not task.done():
                task.cancel()

    async def probe(self) -> str | None:
        """Connect, log in and select on a separate connection: a problem code, or None."""
        mailbox = ImapMailbox(self.settings)
        try:
            await mailbox.connect()
        except MailboxUnavailable as e:
            return e.problem
        finally:
            await mailbox.close()
        return None

    def _current(self) -> _Session:
        session = self._session
        if session is None:
            raise MailboxUnavailable("unreachable")
        if session.lost.is_set():
            raise MailboxUnavailable(session.problem())
        return session

    async def _greeting(self, session: _Session) -> None:
        hello = asyncio.ensure_future(session.client.wait_hello_from_server())
        lost = asyncio.ensure_future(session.lost.wait())
        try:  # wait_hello_from_server has its own timeout
            await asyncio.wait({hello, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not hello.done():
                hello.cancel()
        if hello.done() and not hello.cancelled():
            error = hello.exception()
            if error is None:
                return
            # Handshake failures (certificate, version), refused port, timeout.
            raise MailboxUnavailable(
                diagnose(error) if isinstance(error, OSError) else "unreachable"
            ) from None
        if session.lost_error is not None:
            raise MailboxUnavailable(session.problem())
        # A hang-up right after a handshake the client saw succeed, with no alert: how
        # TLS 1.3 servers refuse a client certificate (same reading as smtp.py).
        raise MailboxUnavailable("client_cert_refused")

    async def _login(self, session: _Session) -> None:
        try:
            response = await self._call(
                session,
                session.client.login(
                    aioimaplib.quoted(self.settings.username), self.settings.password
                ),
            )
        except ValueError:  # a control character in the credentials; never echo them
            raise MailboxUnavailable("login_refused") from None
        if response.result != "OK":
            # Dovecot checks the client certificate at LOGIN, not during the handshake:
            # "NO [ALERT] Client didn't present valid SSL certificate".
            refused_cert = _CERT_REFUSAL_RE.search(_text(response.lines))
            raise MailboxUnavailable("client_cert_refused" if refused_cert else "login_refused")

    async def _select(self, session: _Session) -> int:
        response = await self._call(session, session.client.select(self.settings.folder))
        self._check(response, "folder_unavailable")
        match = _UIDVALIDITY_RE.search(_text(response.lines))
        if match is None:
            raise MailboxUnavailable("server_error")
        return int(match.group(1))

    async def _idle(self, session: _Session, timeout: float) -> None:
        client = session.client
        idle = await self._call(session, client.idle_start(timeout=timeout + 60))
        mail = asyncio.ensure_future(session.new_mail.wait())
        lost = asyncio.ensure_future(session.lost.wait())
        try:
            # The server may also end IDLE itself (then ``idle`` completes): just return.
            await asyncio.wait(
                {idle, mail, lost}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            mail.cancel()
            lost.cancel()
        if not idle.done() and not session.lost.is_set():
            client.idle_done()
            await self._call(session, idle)
        self._drain(client)
        if session.lost.is_set():
            raise MailboxUnavailable(session.problem())

    @staticmethod
    def _drain(client: Any) -> None:
        """Empty aioimaplib's push queue: ``_hook`` already saw every EXISTS in it."""
        queue: asyncio.Queue[Any] = client.protocol.idle_queue
        while not queue.empty():
            queue.get_nowait()

    async def _call(
        self, session: _Session, operation: Awaitable[T], timeout: float | None = None
    ) -> T:
        """Run one client operation; a lost connection or timeout breaks the session."""
        task = asyncio.ensure_future(operation)
        if session.lost.is_set():
            task.cancel()
            raise MailboxUnavailable(session.problem())
        lost = asyncio.ensure_future(session.lost.wait())
        limit = timeout if timeout is not None else self.settings.timeout + 5
        try:
            await asyncio.wait({task, lost}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled():
            error = task.exception()
            if error is None:
                return task.result()
            if isinstance(error, ValueError):
                raise error
        if session.lost.is_set():
            raise MailboxUnavailable(session.problem())
        session.lost.set()  # a timed-out or failed command leaves the protocol unusable
        raise MailboxUnavailable("unreachable")

    @staticmethod
    def _check(response: Any, problem: str) -> None:
        if response.result != "OK":
            raise MailboxUnavailable(problem)
