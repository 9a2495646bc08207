"""Sending to the MSSanté relay over mutual TLS, one reused connection, outcomes not exceptions.

The outbox needs three answers, not a stack trace: sent, try again later (temporary), or
give up and tell the sender (permanent). Every server reply, network failure and TLS
problem becomes a ``SendResult``; a TLS or connection failure also carries the problem
code of ``tls.diagnose`` so the admins can be told what to fix. Certificate problems stay
"temporary": the mail waits in the outbox while the configuration is repaired.

Clear text is impossible: STARTTLS mode demands the upgrade (``start_tls=True``: a server
that does not offer it is refused), implicit mode starts with TLS, and both use
``tls.client_context`` (pinned CA, client certificate, TLS 1.2+).

One connection is kept open between sends (sending a batch then costs one handshake); it
is reopened when the server closed it, and dropped after any failure it may have caused.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import aiosmtplib

from bridge.mail.tls import TlsConfigError, TlsFiles, client_context, diagnose

log = logging.getLogger(__name__)

Outcome = Literal["sent", "temporary", "permanent"]
_DISCONNECTS = (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError)
_NETWORK_ERRORS = (aiosmtplib.SMTPException, OSError)
_QUIT_TIMEOUT = 5.0


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to reach the operator's submission service."""

    host: str
    port: int
    mode: Literal["starttls", "implicit"]
    tls: TlsFiles
    sender: str
    timeout: float = 30
    helo: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RecipientRefusal:
    """The server's answer to one refused RCPT TO."""

    recipient: str
    code: int
    reply: str


@dataclass(frozen=True)
class SendResult:
    """What became of one message.

    ``problem`` is a ``tls.diagnose`` code (or "login_refused", "session_refused", a
    ``TlsConfigError`` reason) when the connection could not be set up. When a recipient
    is refused nothing is sent to anyone (no DATA), so a retry cannot duplicate; the
    refusals are listed in ``refused``.
    """

    outcome: Outcome
    code: int | None
    reply: str
    problem: str | None
    refused: tuple[RecipientRefusal, ...] = ()


def classify(code: int | None) -> Literal["temporary", "permanent"]:
    """5xx is permanent; 4xx, no reply (a connection failure) and oddities are temporary."""
    return "permanent" if code is not None and 500 <= code < 600 else "temporary"


def _describe(exc: BaseException) -> str:
    """A short, secret-free description (exception texts carry no credentials here)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def _bare_disconnect(exc: BaseException) -> bool:
    """The server hung up without a TLS alert or socket error (only a lost connection)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    lost = any(isinstance(item, aiosmtplib.SMTPServerDisconnected) for item in chain)
    other = any(
        isinstance(item, ssl.SSLError)
        or (isinstance(item, OSError) and not isinstance(item, aiosmtplib.SMTPException))
        for item in chain
    )
    return lost and not other


class _Stale(Exception):
    """The connection broke before anything was accepted: safe to retry once."""


class _SetupFailed(Exception):
    def __init__(self, result: SendResult) -> None:
        super().__init__(result.problem)
        self.result = result


class SmtpRelay:
    """Sends raw messages through one relay; never raises for server, network or TLS trouble."""

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings
        self._client: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()
        self.connections_opened = 0

    async def _open(self) -> aiosmtplib.SMTP:
        """Connect, TLS, EHLO (and AUTH); raises _SetupFailed with the problem code."""
        settings = self._settings
        try:
            context = client_context(settings.tls)
        except TlsConfigError as exc:
            raise _SetupFailed(SendResult("temporary", None, exc.reason, exc.reason)) from None
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            local_hostname=settings.helo,
            timeout=settings.timeout,
            use_tls=settings.mode == "implicit",
            start_tls=settings.mode == "starttls",
            validate_certs=True,
            tls_context=context,
        )
        self.connections_opened += 1
        tls_up = False
        try:
            await client.connect()
            tls_up = True
            # EHLO now: a TLS 1.3 server refusing our certificate hangs up right here.
            await client.ehlo()
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            starttls_refused = type(exc) is aiosmtplib.SMTPResponseException and not tls_up
            problem = "no_starttls" if starttls_refused else "session_refused"
            raise _SetupFailed(SendResult("temporary", exc.code, exc.message, problem)) from None
        except _NETWORK_ERRORS as exc:
            client.close()
            raise _SetupFailed(
                SendResult("temporary", None, _describe(exc), self._problem(exc, tls_up))
            ) from None
        except BaseException:
            client.close()
            raise
        if settings.username is not None:
            await self._login(client, settings.username, settings.password or "")
        return client

    async def _login(self, client: aiosmtplib.SMTP, username: str, password: str) -> None:
        """AUTH; any refusal (including no AUTH offered) is "login_refused"."""
        try:
            await client.login(username, password)
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            raise _SetupFailed(
                SendResult("temporary", exc.code, exc.message, "login_refused")
            ) from None
        except (*_DISCONNECTS, OSError) as exc:
            client.close()
            raise _SetupFailed(SendResult("temporary", None, _describe(exc), None)) from None
        except aiosmtplib.SMTPException as exc:
            client.close()
            raise _SetupFailed(
                SendResult("temporary", None, _describe(exc), "login_refused")
            ) from None
        except BaseException:
            client.close()
            raise

    def _problem(self, exc: BaseException, tls_up: bool) -> str:
        """diagnose(), plus the one pattern it cannot see: a hang-up right after TLS."""
        problem = diagnose(exc)
        if problem in ("tls_error", "unreachable") and _bare_disconnect(exc):
            # TLS 1.3 servers check the client certificate after the handshake the client
            # saw complete; without an alert, the hang-up is all that shows.
            if tls_up or self._settings.mode == "implicit":
                return "client_cert_refused"
        return problem

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _reset(self, client: aiosmtplib.SMTP) -> None:
        """RSET after a refusal so the connection can be reused; drop it if that fails."""
        try:
            if client.is_connected:
                await client.rset()
                return
        except _NETWORK_ERRORS:
            pass
        self._drop()

    async def send(self, raw: bytes, recipients: Sequence[str]) -> SendResult:
        """Send ``raw`` (a complete RFC 5322 message) to ``recipients`` (envelope)."""
        if not recipients:
            raise ValueError("no recipients")
        async with self._lock:
            for attempt in range(2):
                reused = self._client is not None and self._client.is_connected
                if not reused:
                    self._drop()
                    try:
                        self._client = await self._open()
                    except _SetupFailed as failed:
                        log.warning(
                            "SMTP relay %s:%s unusable: %s",
                            self._settings.host,
                            self._settings.port,
                            failed.result.problem,
                        )
                        return failed.result
                assert self._client is not None
                try:
                    return await self._transaction(self._client, raw, recipients)
                except _Stale as stale:
                    self._drop()
                    if reused and attempt == 0:
                        continue  # the server closed an idle connection: once more, fresh
                    return SendResult("temporary", None, str(stale), None)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _transaction(
        self, client: aiosmtplib.SMTP, raw: bytes, recipients: Sequence[str]
    ) -> SendResult:
        options = []
        if not raw.isascii() and client.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        try:
            await client.mail(self._settings.sender, options=options)
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:
                raise _Stale(_describe(exc)) from None
            await self._reset(client)
            return SendResult(classify(exc.code), exc.code, exc.message, None)
        except _NETWORK_ERRORS as exc:
            raise _Stale(_describe(exc)) from None

        refused: list[RecipientRefusal] = []
        for recipient in recipients:
            try:
                await client.rcpt(recipient)
            except aiosmtplib.SMTPResponseException as exc:
                refused.append(RecipientRefusal(recipient, exc.code, exc.message))
            except _NETWORK_ERRORS as exc:
                self._drop()
                return SendResult("temporary", None, _describe(exc), None)
        if refused:
            await self._reset(client)
            worst = next((r for r in refused if classify(r.code) == "permanent"), refused[0])
            return SendResult(
                classify(worst.code), worst.code, worst.reply, None, refused=tuple(refused)
            )

        try:
            response = await client.data(raw)
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset(client)
            return SendResult(classify(exc.code), exc.code, exc.message, None)
        except _NETWORK_ERRORS as exc:
            # The message may or may not have been taken: retry later (Message-ID dedups).
            self._drop()
            return SendResult("temporary", None, _describe(exc), None)
        return SendResult("sent", response.code, response.message, None)

    async def probe(self) -> str | None:
        """Connect, TLS, EHLO, NOOP, QUIT on a fresh connection; a problem code or None."""
        try:
            client = await self._open()
        except _SetupFailed as failed:
            return failed.result.problem
        try:
            await client.noop()
            await client.quit(timeout=_QUIT_TIMEOUT)
        except aiosmtplib.SMTPResponseException:
            return "session_refused"
        except _NETWORK_ERRORS as exc:
            return self._problem(exc, tls_up=True)
        finally:
            client.close()
        return None

    async def close(self) -> None:
        """QUIT the kept connection (best effort)."""
        async with self._lock:
            client, self._client = self._client, None
            if client is None:
                return
            try:
                if client.is_connected:
                    await client.quit(timeout=_QUIT_TIMEOUT)
            except _NETWORK_ERRORS:
                pass
            finally:
                client.close()
