"""TLS downgrades on the mail links are refused before a word goes out in clear.

Real servers on loopback with certificates made at test time (make_pki). Beside what
tests/mail covers already (no STARTTLS offered, TLS 1.1 relay, expired / wrong-host /
foreign-CA certificates on SMTP, the same against Dovecot on IMAP), here:

- SMTP: a relay (or a man in the middle) that advertises STARTTLS then refuses it
  (``454``): nothing is sent in clear, the mail stays to retry;
- SMTP: a relay whose only ciphers are weak (SHA-1 CBC, no encryption): refused;
- IMAP (implicit TLS): a server speaking only TLS 1.0/1.1, only weak ciphers, a
  certificate for another host or from another CA: refused before LOGIN, so the
  password never reaches it. A plain Python TLS server stands for the IMAP server, so
  these run without Dovecot.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bridge.devtools.mailcerts import Pki, make_pki
from bridge.devtools.mailserver import RelayServer
from bridge.mail.imap import ImapMailbox, ImapSettings, MailboxUnavailable
from bridge.mail.smtp import SmtpRelay, SmtpSettings
from bridge.mail.tls import TlsFiles

SENDER = "app@sg.mssante.test"
RECIPIENT = "dr.martin@medecin.mssante.test"
MESSAGE = (
    f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: downgrade\r\n"
    "Message-ID: <sg.downgrade@sg.mssante.test>\r\n\r\nconfidential\r\n"
).encode()
# Ciphers no client of ours may accept: CBC with SHA-1 MACs, and no encryption at all.
WEAK_CIPHERS = ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-NULL-SHA"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("downgrade-pki"))


def files(pki: Pki) -> TlsFiles:
    return TlsFiles(pki.ca_cert, pki.client_cert, pki.client_key)


def weak_context(cert: Path, key: Path, cipher: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.3 suites are all strong
    context.set_ciphers(f"{cipher}:@SECLEVEL=0")
    return context


# -- SMTP ---------------------------------------------------------------------------------


@dataclass
class StrippingRelay:
    """Advertises STARTTLS, then answers 454 to it: what a downgrading middlebox does."""

    commands: list[bytes] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 relay.test ESMTP\r\n")
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while line := await reader.readline():
                self.commands.append(line)
                verb = line.split(b" ", 1)[0].strip().upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(b"250-relay.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
                elif verb == b"STARTTLS":
                    writer.write(b"454 4.7.0 TLS not available due to temporary reason\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:  # would accept anything in clear
                    writer.write(b"250 OK\r\n")
                await writer.drain()
        writer.close()


async def test_starttls_advertised_then_refused_sends_nothing_in_clear(pki: Pki) -> None:
    relay = StrippingRelay()
    server = await asyncio.start_server(relay.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = SmtpRelay(SmtpSettings("127.0.0.1", port, "starttls", files(pki), SENDER, timeout=5))
    try:
        result = await client.send(MESSAGE, [RECIPIENT])
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
    assert result.outcome == "temporary", result  # kept in the outbox, retried later
    assert result.problem == "no_starttls", result  # "nothing is sent in clear"
    verbs = [c.split(b" ", 1)[0].strip().upper() for c in relay.commands]
    assert b"STARTTLS" in verbs
    assert not {b"MAIL", b"RCPT", b"DATA", b"AUTH"} & set(verbs), verbs
    assert not any(b"confidential" in c for c in relay.commands)


class WeakRelay(RelayServer):
    """The test relay, offering one weak cipher only."""

    cipher = WEAK_CIPHERS[0]

    def server_context(self) -> ssl.SSLContext:
        context = super().server_context()
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(f"{self.cipher}:@SECLEVEL=0")
        return context


@pytest.mark.parametrize("cipher", WEAK_CIPHERS)
@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_smtp_relay_with_only_weak_ciphers_is_refused(
    pki: Pki, mode: str, cipher: str
) -> None:
    relay_type = type("Relay", (WeakRelay,), {"cipher": cipher})
    async with relay_type(pki, mode=mode) as relay:
        client = SmtpRelay(
            SmtpSettings("127.0.0.1", relay.port, mode, files(pki), SENDER, timeout=5)  # type: ignore[arg-type]
        )
        try:
            result = await client.send(MESSAGE, [RECIPIENT])
        finally:
            await client.close()
    assert result.outcome == "temporary", result
    assert result.problem in ("tls_error", "tls_version"), result
    assert relay.messages == [] and relay.mail_commands == 0


# -- IMAP ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def imap_server(context: ssl.SSLContext) -> AsyncIterator[tuple[int, list[bytes]]]:
    """An implicit-TLS server that greets like IMAP and records what it is told."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n")
        with contextlib.suppress(ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            while line := await reader.readline():
                received.append(line)
                tag = line.split(b" ", 1)[0]
                if b"CAPABILITY" in line.upper():
                    writer.write(b"* CAPABILITY IMAP4rev1 IDLE\r\n")
                writer.write(tag + b" OK done\r\n")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1], received
    finally:
        server.close()
        await server.wait_closed()


def old_tls_context(pki: Pki, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = version
    return context


def plain_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


async def imap_refusal(port: int, pki: Pki, tls: TlsFiles | None = None) -> MailboxUnavailable:
    settings = ImapSettings(
        host="127.0.0.1",
        port=port,
        tls=tls or files(pki),
        username="sg",
        password="imap-password-never-sent",
        timeout=5,
    )
    box = ImapMailbox(settings)
    try:
        with pytest.raises(MailboxUnavailable) as info:
            await box.connect()
    finally:
        await box.close()
    return info.value


def speaks(port: int, version: ssl.TLSVersion) -> bool:
    """Whether the server does speak ``version`` (this OpenSSL may not, even at SECLEVEL=0:
    then there is nothing to refuse)."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname, probe.verify_mode = False, ssl.CERT_NONE
    probe.set_ciphers("DEFAULT:@SECLEVEL=0")
    probe.minimum_version = probe.maximum_version = version
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            probe.wrap_socket(raw) as tls,
        ):
            return tls.version() in ("TLSv1", "TLSv1.1")
    except (ssl.SSLError, OSError):
        return False


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
async def test_imap_server_below_tls_1_2_is_refused(pki: Pki, version: ssl.TLSVersion) -> None:
    async with imap_server(old_tls_context(pki, version)) as (port, received):
        if not await asyncio.to_thread(speaks, port, version):
            pytest.skip(f"this OpenSSL cannot serve {version.name}: nothing to refuse")
        received.clear()
        error = await imap_refusal(port, pki)
    # This server, like plain asyncio, hangs up without the protocol_version alert that
    # names the cause (Dovecot sends it; tests/mail/test_smtp.py checks the precise code
    # against an alerting server): refused all the same.
    assert error.problem in ("tls_version", "tls_error"), error
    assert received == []  # no LOGIN: the password never left


@pytest.mark.parametrize("cipher", WEAK_CIPHERS)
async def test_imap_server_with_only_weak_ciphers_is_refused(pki: Pki, cipher: str) -> None:
    async with imap_server(weak_context(pki.server_cert, pki.server_key, cipher)) as (port, got):
        error = await imap_refusal(port, pki)
    assert error.problem in ("tls_error", "tls_version"), error
    assert got == []


@pytest.mark.parametrize(
    ("stem", "problem"), [("wronghost_server", "wrong_host"), ("foreign_server", "unknown_ca")]
)
async def test_imap_server_certificate_not_pinned_is_refused(
    pki: Pki, stem: str, problem: str
) -> None:
    context = plain_context(getattr(pki, f"{stem}_cert"), getattr(pki, f"{stem}_key"))
    async with imap_server(context) as (port, received):
        error = await imap_refusal(port, pki)
    assert error.problem == problem, error
    assert received == []


async def test_the_fake_imap_server_does_get_a_login_when_all_is_right(pki: Pki) -> None:
    """The refusals above are about TLS: the same server, well configured, is logged into."""
    async with imap_server(plain_context(pki.server_cert, pki.server_key)) as (port, received):
        settings = ImapSettings(
            host="127.0.0.1", port=port, tls=files(pki), username="sg",
            password="imap-password-never-sent", timeout=5,
        )  # fmt: skip
        box = ImapMailbox(settings)
        with contextlib.suppress(MailboxUnavailable, Exception):
            await box.connect()
        await box.close()
    assert any(b"LOGIN" in line.upper() for line in received), received
