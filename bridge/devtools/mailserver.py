"""Mail servers for tests: an MSSanté-like SMTP relay (aiosmtpd) run in the test's own loop.

The relay demands what an MSSanté operator demands (STARTTLS or implicit TLS, a client
certificate from the pinned CA) and can misbehave on request: offer no STARTTLS at all
("plain", to prove the client refuses to talk in clear), answer 4xx/5xx to the next
commands, serve an expired or wrong-host certificate, or cap TLS below 1.2. It runs on
``loop.create_server`` in the running event loop: no thread, no Controller.

Nothing here logs a message body: aiosmtpd's DEBUG records (which dump DATA lines) are
dropped while a server runs.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto as sslproto
import email.policy
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from aiosmtpd.smtp import SMTP, Envelope, Session, TLSSetupException, syntax

from bridge.devtools.mailcerts import Pki

Deliver = Callable[[bytes, str, list[str]], Awaitable[None]]
Mode = Literal["starttls", "implicit", "plain"]

_AIOSMTPD_LOGGER = "mail.log"
_NOISE = ("tls_context.verify_mode not in",)
_SHORT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
}


@dataclass(frozen=True)
class Received:
    """One accepted message, as the relay saw it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer_cert_subject: str | None


@dataclass
class _Rejection:
    stage: Literal["rcpt", "data"]
    code: int
    text: str
    remaining: int


class _QuietFilter(logging.Filter):
    """Drops aiosmtpd's DEBUG records (DATA lines = bodies) and its per-connection warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            return False
        message = record.getMessage()
        return not any(noise in message for noise in _NOISE)


def _consume(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _subject(peercert: Any) -> str | None:
    if not isinstance(peercert, dict) or not peercert.get("subject"):
        return None
    parts = [
        f"{_SHORT_NAMES.get(name, name)}={value}"
        for rdn in peercert["subject"]
        for name, value in rdn
    ]
    return ",".join(parts)


class _AlertingSSLProtocol(sslproto.SSLProtocol):
    """Sends the TLS alert before closing a failed handshake, as OpenSSL servers do.

    asyncio aborts the connection with the alert still in its buffer, so without this the
    client only sees a reset and cannot tell "certificate required" from anything else.
    """

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        transport = self._transport
        if handshake_exc is not None and isinstance(transport, asyncio.WriteTransport):
            outgoing: ssl.MemoryBIO = self._outgoing  # type: ignore[attr-defined]
            pending = outgoing.read()
            if pending:
                transport.write(pending)
        super()._on_handshake_complete(handshake_exc)


class _RelaySMTP(SMTP):
    """aiosmtpd's SMTP, with a STARTTLS that sends TLS alerts (see _AlertingSSLProtocol)."""

    send_alerts = True

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        if not self.send_alerts or arg or not self.tls_context:
            await super().smtp_STARTTLS(arg)
            return
        await self.push("220 Ready to start TLS")
        waiter = self.loop.create_future()
        self._tls_protocol = _AlertingSSLProtocol(
            self.loop, self, self.tls_context, waiter, server_side=True
        )
        original = self.transport
        assert isinstance(original, asyncio.Transport)
        self._original_transport = original
        original.set_protocol(self._tls_protocol)
        self.transport = self._tls_protocol._app_transport
        self._tls_protocol.connection_made(original)
        try:
            await waiter
        except asyncio.CancelledError:
            raise
        except Exception as error:
            raise TLSSetupException() from error


@dataclass
class _Handler:
    """aiosmtpd handler hooks; state lives on the RelayServer passed in."""

    relay: RelayServer

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        self.relay.mail_commands += 1
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self.relay._take_rejection("rcpt")
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        refusal = self.relay._take_rejection("data")
        if refusal is not None:
            return refusal
        peercert = None
        if server.transport is not None:
            peercert = server.transport.get_extra_info("peercert")
        if peercert is None and session.ssl:
            peercert = session.ssl.get("peercert")
        data = envelope.original_content or b""
        mail_from = envelope.mail_from or ""
        rcpt_tos = list(envelope.rcpt_tos)
        if self.relay.deliver is not None:
            try:
                await self.relay.deliver(data, mail_from, rcpt_tos)
            except Exception:
                logging.getLogger(__name__).exception("test relay: onward delivery failed")
                return "451 4.3.0 onward delivery failed"
        self.relay.messages.append(Received(mail_from, rcpt_tos, data, _subject(peercert)))
        return "250 2.0.0 OK queued"


@dataclass
class RelayServer:
    """An SMTP relay on 127.0.0.1 demanding TLS (and a client certificate by default)."""

    pki: Pki
    port: int = 0
    mode: Mode = "starttls"
    require_client_cert: bool = True
    server_cert: tuple[Path, Path] | None = None  # (cert, key) instead of pki.server_*
    deliver: Deliver | None = None
    tls_max_version: ssl.TLSVersion | None = None
    send_alerts: bool = True  # False: drop failed handshakes silently, as plain asyncio does
    host: str = "127.0.0.1"
    messages: list[Received] = field(default_factory=list, init=False)
    connections: int = field(default=0, init=False)
    mail_commands: int = field(default=0, init=False)  # MAIL FROM seen, even in clear text
    _rejections: list[_Rejection] = field(default_factory=list, init=False, repr=False)
    _server: asyncio.Server | None = field(default=None, init=False, repr=False)
    _sessions: list[SMTP] = field(default_factory=list, init=False, repr=False)
    _filter: _QuietFilter = field(default_factory=_QuietFilter, init=False, repr=False)

    def server_context(self) -> ssl.SSLContext:
        """The relay's TLS context (mutual TLS against the test CA unless told otherwise)."""
        cert, key = self.server_cert or (self.pki.server_cert, self.pki.server_key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        if self.require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=str(self.pki.ca_cert))
        if self.tls_max_version is not None:
            # Old versions are disabled at OpenSSL 3's default security level.
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = self.tls_max_version
        return context

    def _factory(self, context: ssl.SSLContext | None) -> asyncio.BaseProtocol:
        self.connections += 1
        starttls = self.mode == "starttls"
        loop = asyncio.get_running_loop()
        session = _RelaySMTP(
            _Handler(self),
            hostname="relay.test",
            tls_context=context if starttls else None,
            require_starttls=starttls,
            loop=loop,
        )
        session.send_alerts = self.send_alerts
        self._sessions.append(session)
        if self.mode == "implicit" and context is not None:
            protocol = _AlertingSSLProtocol if self.send_alerts else sslproto.SSLProtocol
            waiter: asyncio.Future[None] = loop.create_future()
            waiter.add_done_callback(_consume)  # nobody awaits it: no "never retrieved"
            return protocol(loop, session, context, waiter, server_side=True)
        return session

    async def start(self) -> None:
        """Listen on ``host`` (``port`` 0 picks a free port, then ``.port`` holds it)."""
        logging.getLogger(_AIOSMTPD_LOGGER).addFilter(self._filter)
        context = None if self.mode == "plain" else self.server_context()
        loop = asyncio.get_running_loop()
        # Implicit TLS: the factory wraps each session in an SSLProtocol itself.
        self._server = await loop.create_server(
            lambda: self._factory(context), self.host, self.port
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and every open session."""
        if self._server is not None:
            self._server.close()
            self.drop_connections()
            await self._server.wait_closed()
            self._server = None
            await asyncio.sleep(0)  # let the sessions' connection_lost run
        self._sessions.clear()
        logging.getLogger(_AIOSMTPD_LOGGER).removeFilter(self._filter)

    async def pause(self) -> None:
        """Go down as a crashed relay does: connections refused, open sessions hung up.

        The port, the received messages and the counters are kept, so ``resume`` brings
        the same relay back where clients expect it.
        """
        await self.stop()

    async def resume(self) -> None:
        """Listen again on the port held since the first ``start`` (after ``pause``)."""
        if self._server is None:
            await self.start()

    @property
    def listening(self) -> bool:
        return self._server is not None

    def drop_connections(self) -> None:
        """Hang up on every open session (as a server's idle timeout would)."""
        for session in self._sessions:
            if session.transport is not None:
                session.transport.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def reject_next(
        self, code: int, text: str, count: int = 1, *, at: Literal["rcpt", "data"] = "data"
    ) -> None:
        """Answer ``code text`` to the next ``count`` DATA (or RCPT) commands."""
        self._rejections.append(_Rejection(at, code, text, count))

    def _take_rejection(self, stage: Literal["rcpt", "data"]) -> str | None:
        for rejection in self._rejections:
            if rejection.stage == stage and rejection.remaining > 0:
                rejection.remaining -= 1
                return f"{rejection.code} {rejection.text}"
        return None

    def message_ids(self) -> list[str]:
        """The Message-ID header of each accepted message, in order ('' when absent)."""
        parser = BytesHeaderParser(policy=email.policy.default)
        ids = []
        for message in self.messages:
            value = parser.parsebytes(message.data).get("Message-ID")
            ids.append(str(value).strip() if value is not None else "")
        return ids
