"""SmtpRelay against the real test relay (aiosmtpd in this loop) with certificates from make_pki."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pytest

from bridge.devtools.mailcerts import Pki, make_pki
from bridge.devtools.mailserver import RelayServer
from bridge.mail.smtp import SendResult, SmtpRelay, SmtpSettings
from bridge.mail.tls import TlsFiles

Mode = Literal["starttls", "implicit"]
SENDER = "app@sg.mssante.test"
RECIPIENT = "dr.martin@medecin.mssante.test"


def _message(n: int = 0) -> bytes:
    return (
        f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: test {n}\r\n"
        f"Message-ID: <sg.{n:032x}@sg.mssante.test>\r\n\r\nhello {n}\r\n"
    ).encode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("smtp-pki"))


def good_files(pki: Pki) -> TlsFiles:
    return TlsFiles(pki.ca_cert, pki.client_cert, pki.client_key)


def settings(relay: RelayServer, files: TlsFiles, mode: Mode | None = None) -> SmtpSettings:
    chosen: Mode = mode or ("implicit" if relay.mode == "implicit" else "starttls")
    return SmtpSettings("127.0.0.1", relay.port, chosen, files, SENDER, timeout=10)


@contextlib.asynccontextmanager
async def running(pki: Pki, **kwargs: Any) -> AsyncIterator[RelayServer]:
    async with RelayServer(pki, **kwargs) as relay:
        yield relay


async def send_once(relay: RelayServer, files: TlsFiles, mode: Mode | None = None) -> SendResult:
    client = SmtpRelay(settings(relay, files, mode))
    try:
        return await client.send(_message(), [RECIPIENT])
    finally:
        await client.close()


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_sent_with_client_certificate(pki: Pki, mode: Mode) -> None:
    async with running(pki, mode=mode) as relay:
        result = await send_once(relay, good_files(pki))
    assert result.outcome == "sent" and result.code == 250 and result.problem is None
    [received] = relay.messages
    assert received.mail_from == SENDER and received.rcpt_tos == [RECIPIENT]
    assert received.peer_cert_subject is not None
    assert f"CN={pki.client_common_name}" in received.peer_cert_subject
    assert relay.message_ids() == [f"<sg.{0:032x}@sg.mssante.test>"]


async def test_starttls_mode_refuses_a_server_without_starttls(pki: Pki) -> None:
    async with running(pki, mode="plain") as relay:
        result = await send_once(relay, good_files(pki), mode="starttls")
    assert result.outcome == "temporary" and result.problem == "no_starttls"
    assert relay.messages == [] and relay.mail_commands == 0  # not a word in clear text


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
@pytest.mark.parametrize("alerts", [True, False], ids=["alert", "silent-hangup"])
@pytest.mark.parametrize("client", ["none", "foreign", "expired"])
async def test_client_certificate_refused(pki: Pki, mode: Mode, alerts: bool, client: str) -> None:
    files = {
        "none": TlsFiles(pki.ca_cert, None, None),
        "foreign": TlsFiles(pki.ca_cert, pki.foreign_client_cert, pki.foreign_client_key),
        "expired": TlsFiles(pki.ca_cert, pki.expired_client_cert, pki.expired_client_key),
    }[client]
    async with running(pki, mode=mode, send_alerts=alerts) as relay:
        result = await send_once(relay, files)
    assert result.outcome == "temporary"
    assert result.problem == "client_cert_refused", result
    assert relay.messages == [] and relay.mail_commands == 0


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
@pytest.mark.parametrize(
    ("stem", "problem"),
    [
        ("expired_server", "expired"),
        ("wronghost_server", "wrong_host"),
        ("foreign_server", "unknown_ca"),
    ],
)
async def test_bad_server_certificate(pki: Pki, mode: Mode, stem: str, problem: str) -> None:
    cert: Path = getattr(pki, f"{stem}_cert")
    key: Path = getattr(pki, f"{stem}_key")
    async with running(pki, mode=mode, server_cert=(cert, key)) as relay:
        result = await send_once(relay, good_files(pki))
    assert (result.outcome, result.problem) == ("temporary", problem), result
    assert relay.messages == []


async def test_reply_codes(pki: Pki) -> None:
    async with running(pki) as relay:
        client = SmtpRelay(settings(relay, good_files(pki)))
        relay.reject_next(451, "4.3.0 try again later")
        temporary = await client.send(_message(1), [RECIPIENT])
        relay.reject_next(554, "5.7.1 rejected by policy")
        permanent = await client.send(_message(2), [RECIPIENT])
        relay.reject_next(550, "5.1.1 no such user", at="rcpt")
        unknown_user = await client.send(_message(3), [RECIPIENT, "other@x.mssante.test"])
        relay.reject_next(450, "4.2.0 mailbox busy", at="rcpt")
        busy = await client.send(_message(4), ["other@x.mssante.test", RECIPIENT])
        fine = await client.send(_message(5), [RECIPIENT])
        await client.close()
    assert (temporary.outcome, temporary.code, temporary.problem) == ("temporary", 451, None)
    assert "try again later" in temporary.reply
    assert (permanent.outcome, permanent.code) == ("permanent", 554)
    assert "rejected by policy" in permanent.reply
    assert (unknown_user.outcome, unknown_user.code) == ("permanent", 550)
    assert [r.recipient for r in unknown_user.refused] == [RECIPIENT]
    assert (busy.outcome, busy.code) == ("temporary", 450)
    assert [r.recipient for r in busy.refused] == ["other@x.mssante.test"]
    assert fine.outcome == "sent"
    # Refusals reset the transaction but keep the connection; nothing half-sent.
    assert relay.connections == 1 and client.connections_opened == 1
    assert relay.message_ids() == [f"<sg.{5:032x}@sg.mssante.test>"]


async def test_connection_refused_is_unreachable(pki: Pki) -> None:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    files = good_files(pki)
    client = SmtpRelay(SmtpSettings("127.0.0.1", port, "starttls", files, SENDER, timeout=5))
    result = await client.send(_message(), [RECIPIENT])
    assert (result.outcome, result.code, result.problem) == ("temporary", None, "unreachable")
    assert await client.probe() == "unreachable"


async def test_one_connection_for_fifty_sends(pki: Pki) -> None:
    async with running(pki) as relay:
        client = SmtpRelay(settings(relay, good_files(pki)))
        results = [await client.send(_message(n), [RECIPIENT]) for n in range(50)]
        await client.close()
    assert {r.outcome for r in results} == {"sent"}
    assert len(relay.messages) == 50 and relay.connections == 1


async def test_concurrent_sends_share_the_connection(pki: Pki) -> None:
    async with running(pki) as relay:
        client = SmtpRelay(settings(relay, good_files(pki)))
        results = await asyncio.gather(*(client.send(_message(n), [RECIPIENT]) for n in range(5)))
        await client.close()
    assert [r.outcome for r in results] == ["sent"] * 5
    assert sorted(relay.message_ids()) == sorted(f"<sg.{n:032x}@sg.mssante.test>" for n in range(5))
    assert relay.connections == 1


async def test_reconnects_after_the_server_closed_the_connection(pki: Pki) -> None:
    async with running(pki) as relay:
        client = SmtpRelay(settings(relay, good_files(pki)))
        assert (await client.send(_message(1), [RECIPIENT])).outcome == "sent"
        relay.drop_connections()
        await asyncio.sleep(0.05)
        assert (await client.send(_message(2), [RECIPIENT])).outcome == "sent"
        # Closed without the client noticing yet: the failed MAIL is retried on a new one.
        relay.drop_connections()
        assert (await client.send(_message(3), [RECIPIENT])).outcome == "sent"
        await client.close()
    assert len(relay.messages) == 3
    assert relay.connections == 3


async def test_server_restart_between_sends(pki: Pki) -> None:
    async with running(pki) as relay:
        client = SmtpRelay(settings(relay, good_files(pki)))
        assert (await client.send(_message(1), [RECIPIENT])).outcome == "sent"
        port = relay.port
    down = await client.send(_message(2), [RECIPIENT])
    assert (down.outcome, down.problem) == ("temporary", "unreachable")
    async with running(pki, port=port) as relay:
        assert (await client.send(_message(2), [RECIPIENT])).outcome == "sent"
        await client.close()
    assert relay.message_ids() == [f"<sg.{2:032x}@sg.mssante.test>"]


def _server_speaks_tls11(pki: Pki, port: int) -> bool:
    """Whether this OpenSSL lets the relay negotiate TLS 1.1 at all (implicit mode)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.TLSv1_1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.load_cert_chain(pki.client_cert, pki.client_key)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw) as tls,
        ):
            return tls.version() == "TLSv1.1"
    except (ssl.SSLError, OSError):
        return False


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_tls_below_1_2_refused(pki: Pki, mode: Mode) -> None:
    async with running(pki, mode="implicit", tls_max_version=ssl.TLSVersion.TLSv1_1) as check:
        speaks = await asyncio.to_thread(_server_speaks_tls11, pki, check.port)
    if not speaks:
        pytest.skip("this OpenSSL cannot serve TLS 1.1 even at SECLEVEL=0: nothing to refuse")
    async with running(pki, mode=mode, tls_max_version=ssl.TLSVersion.TLSv1_1) as relay:
        result = await send_once(relay, good_files(pki))
    assert (result.outcome, result.problem) == ("temporary", "tls_version"), result
    assert relay.messages == []


async def test_probe(pki: Pki) -> None:
    async with running(pki) as relay:
        assert await SmtpRelay(settings(relay, good_files(pki))).probe() is None
        no_cert = TlsFiles(pki.ca_cert, None, None)
        assert await SmtpRelay(settings(relay, no_cert)).probe() == "client_cert_refused"
    async with running(pki, mode="plain") as relay:
        assert await SmtpRelay(settings(relay, good_files(pki), "starttls")).probe() == (
            "no_starttls"
        )
    wrong = (pki.wronghost_server_cert, pki.wronghost_server_key)
    async with running(pki, mode="implicit", server_cert=wrong) as relay:
        assert await SmtpRelay(settings(relay, good_files(pki))).probe() == "wrong_host"
    assert relay.messages == []


async def test_bad_local_files_and_no_secret_in_results(pki: Pki, tmp_path: Path) -> None:
    secret_key = tmp_path / "broken.key"
    secret_key.write_text("-----BEGIN PRIVATE KEY-----\nS3CRETK3YMATERIALxyz\n")
    async with running(pki) as relay:
        missing_ca = TlsFiles(tmp_path / "nope.pem", pki.client_cert, pki.client_key)
        result = await send_once(relay, missing_ca)
        assert (result.outcome, result.problem) == ("temporary", "ca_missing")
        broken = TlsFiles(pki.ca_cert, pki.client_cert, secret_key)
        result = await send_once(relay, broken)
        assert (result.outcome, result.problem) == ("temporary", "client_cert_unreadable")
        assert "S3CRET" not in repr(result)
        login = replace(
            settings(relay, good_files(pki)), username="sg", password="hunter2-password"
        )
        client = SmtpRelay(login)
        result = await client.send(_message(), [RECIPIENT])
        assert "hunter2" not in repr(login)
    # The relay accepts no credentials: the login fails, and says so without the password.
    assert (result.outcome, result.problem) == ("temporary", "login_refused")
    assert "hunter2" not in repr(result)
    assert relay.messages == []


@pytest.mark.parametrize(
    ("greeting", "problem", "code"),
    [(None, "unreachable", None), (b"554 5.7.1 go away\r\n", "session_refused", 554)],
    ids=["silent", "refused-greeting"],
)
async def test_odd_servers(
    pki: Pki, greeting: bytes | None, problem: str, code: int | None
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if greeting is not None:
            writer.write(greeting)
            await writer.drain()
        await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    files = good_files(pki)
    client = SmtpRelay(SmtpSettings("127.0.0.1", port, "starttls", files, SENDER, timeout=0.3))
    try:
        result = await client.send(_message(), [RECIPIENT])
    finally:
        server.close()
        await server.wait_closed()
    assert (result.outcome, result.problem, result.code) == ("temporary", problem, code)
