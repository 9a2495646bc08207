"""ImapMailbox against a real Dovecot: implicit TLS, client certificates, UIDs, IDLE.

Dovecot is started once for the module (bridge/devtools/dovecot.py). Without
/usr/sbin/dovecot the module is skipped, unless SANTEGUARD_REQUIRE_DOVECOT=1 (set by
`make test`, which installs it), which makes it fail instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import shutil
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.devtools.dovecot import DOVECOT_BIN, Dovecot
from bridge.devtools.mailcerts import Pki, make_pki
from bridge.devtools.maillab import MailLab
from bridge.mail.imap import ImapMailbox, ImapSettings, MailboxUnavailable, MessageNotFound
from bridge.mail.tls import TlsFiles

REQUIRE_DOVECOT = os.environ.get("SANTEGUARD_REQUIRE_DOVECOT") == "1"
WAIT_LIMIT = 10.0
# Trace headers Dovecot's LMTP prepends; anything else before the original is a bug.
TRACE_HEADER = re.compile(rb"^(Return-Path|Delivered-To|Received):|^[ \t]")


def _mail(n: int, extra: bytes = b"") -> bytes:
    """A message whose body would confuse a careless IMAP parser."""
    return (
        b"From: Dr Test <dr.test@hopital.mssante.fr>\r\n"
        b"To: sg@localhost\r\n"
        + f"Subject: imap test {n}\r\n".encode()
        + f"Message-ID: <imap-{n}-{time.monotonic_ns()}@test>\r\n".encode()
        + b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=latin-1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n"
        b"caf\xe9 cr\xe8me br\xfbl\xe9e \xff\xfe\x80\x01\x7f\r\n"
        b".a line starting with a dot\r\n"
        b"..two dots\r\n"
        b".\r\n"
        b"a line ending like a literal {12}\r\n"
        b"* 3 EXISTS\r\n"
        b"A001 OK fake tagged reply\r\n"
        b")\r\n"
        b"(unbalanced ( parentheses\r\n"
        b"\r\n" + b"x" * 990 + b"\r\n" + extra + b"end\r\n"
    )


def _assert_delivered(stored: bytes, original: bytes) -> None:
    assert stored.endswith(original)
    prefix = stored[: len(stored) - len(original)]
    assert prefix.endswith(b"\r\n")
    for line in prefix[:-2].split(b"\r\n"):
        assert TRACE_HEADER.match(line), line


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("imap-pki"))


@pytest.fixture(scope="module")
async def dovecot(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> AsyncIterator[Dovecot]:
    if not DOVECOT_BIN.exists():
        message = f"{DOVECOT_BIN} is missing: `make test` installs Dovecot"
        if REQUIRE_DOVECOT:
            pytest.fail(message)
        pytest.skip(message)
    server = Dovecot(tmp_path_factory.mktemp("dovecot"), pki)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _settings(server: Dovecot, pki: Pki, **changes: object) -> ImapSettings:
    settings = ImapSettings(
        host="127.0.0.1",
        port=server.imap_port,
        tls=TlsFiles(pki.ca_cert, pki.client_cert, pki.client_key),
        username=server.user,
        password=server.password,
        timeout=10,
    )
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def mailbox(dovecot: Dovecot, pki: Pki) -> AsyncIterator[ImapMailbox]:
    box = ImapMailbox(_settings(dovecot, pki))
    try:
        yield box
    finally:
        await box.close()


async def _refusal(settings: ImapSettings) -> MailboxUnavailable:
    box = ImapMailbox(settings)
    try:
        with pytest.raises(MailboxUnavailable) as info:
            await box.connect()
    finally:
        await box.close()
    return info.value


async def test_uidvalidity_is_stable_across_restart(dovecot: Dovecot, mailbox: ImapMailbox) -> None:
    first = await mailbox.connect()
    assert first > 0 and mailbox.uidvalidity == first
    await dovecot.restart()
    assert await mailbox.connect() == first


async def test_delivered_mails_get_increasing_uids_and_exact_bytes(
    dovecot: Dovecot, mailbox: ImapMailbox
) -> None:
    await mailbox.connect()
    before = await mailbox.uids_after(0)
    last = max(before, default=0)
    mails = [_mail(1), _mail(2), _mail(3, extra=b"\xe9" * 300_000 + b"\r\n")]
    for raw in mails:
        await dovecot.deliver(raw)

    new = await mailbox.uids_after(last)
    assert len(new) == 3 and new == sorted(new) and new[0] > last
    assert await mailbox.uids_after(0) == before + new
    # "UID n:*" also matches the highest UID when n is past it: it must be filtered out.
    assert await mailbox.uids_after(new[-1]) == []
    assert await mailbox.uids_after(new[-1] + 1000) == []
    for uid, raw in zip(new, mails, strict=True):
        _assert_delivered(await mailbox.fetch(uid), raw)
    with pytest.raises(MessageNotFound):
        await mailbox.fetch(new[-1] + 1000)


async def test_idle_wakes_up_on_delivery(dovecot: Dovecot, mailbox: ImapMailbox) -> None:
    await mailbox.connect()
    last = max(await mailbox.uids_after(0), default=0)
    waiting = asyncio.create_task(mailbox.wait(WAIT_LIMIT))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    started = time.monotonic()
    await dovecot.deliver(_mail(4))
    await asyncio.wait_for(waiting, WAIT_LIMIT + 5)
    elapsed = time.monotonic() - started
    print(f"IDLE woke up {elapsed:.3f} s after the LMTP delivery")
    assert elapsed < WAIT_LIMIT - 1
    assert len(await mailbox.uids_after(last)) == 1


async def test_mail_announced_during_another_command_is_not_missed(
    dovecot: Dovecot, mailbox: ImapMailbox
) -> None:
    """Dovecot announces new mail once, in the reply to whatever command runs (here a
    FETCH); aioimaplib drops that EXISTS, the mailbox's hook must still see it."""
    await mailbox.connect()
    await dovecot.deliver(_mail(5))
    uids = await mailbox.uids_after(0)
    await dovecot.deliver(_mail(6))
    await mailbox.fetch(uids[-1])  # the new mail's EXISTS comes with this reply
    started = time.monotonic()
    await mailbox.wait(WAIT_LIMIT)
    assert time.monotonic() - started < 1
    assert len(await mailbox.uids_after(uids[-1])) == 1


async def test_wait_times_out_quietly(mailbox: ImapMailbox) -> None:
    await mailbox.connect()
    last = max(await mailbox.uids_after(0), default=0)
    started = time.monotonic()
    await mailbox.wait(0.5)
    assert 0.4 < time.monotonic() - started < 5
    assert await mailbox.uids_after(last) == []  # the session is still usable


async def test_polls_when_the_server_has_no_idle(dovecot: Dovecot, mailbox: ImapMailbox) -> None:
    await mailbox.connect()
    last = max(await mailbox.uids_after(0), default=0)
    mailbox._session.client.protocol.capabilities.discard("IDLE")  # type: ignore[union-attr]
    waiting = asyncio.create_task(mailbox.wait(1.0))
    await dovecot.deliver(_mail(8))
    started = time.monotonic()
    await asyncio.wait_for(waiting, WAIT_LIMIT)
    assert time.monotonic() - started < 2
    assert len(await mailbox.uids_after(last)) == 1


async def test_without_idle_it_polls_every_poll_seconds_not_idle_seconds(
    dovecot: Dovecot, pki: Pki
) -> None:
    """`mail.poll_seconds` is how often a server without IDLE is asked (NOOP), not the
    much longer IDLE renewal period."""
    box = ImapMailbox(_settings(dovecot, pki, idle_seconds=300, poll_seconds=0.3))
    try:
        await box.connect()
        box._session.client.protocol.capabilities.discard("IDLE")  # type: ignore[union-attr]
        started = time.monotonic()
        await asyncio.wait_for(box.wait(300), WAIT_LIMIT)
        assert time.monotonic() - started < 2
    finally:
        await box.close()


async def test_restart_breaks_the_session_and_reconnect_continues(
    dovecot: Dovecot, mailbox: ImapMailbox
) -> None:
    validity = await mailbox.connect()
    last = max(await mailbox.uids_after(0), default=0)
    await dovecot.restart()
    with pytest.raises(MailboxUnavailable) as info:
        await mailbox.uids_after(last)
    assert info.value.problem == "unreachable"
    assert await mailbox.connect() == validity
    await dovecot.deliver(_mail(7))
    assert len(await mailbox.uids_after(last)) == 1


async def test_restart_during_idle_raises_promptly(dovecot: Dovecot, mailbox: ImapMailbox) -> None:
    await mailbox.connect()
    await mailbox.uids_after(0)
    waiting = asyncio.create_task(mailbox.wait(60))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await dovecot.restart()
    with pytest.raises(MailboxUnavailable) as info:
        await asyncio.wait_for(waiting, WAIT_LIMIT)
    assert info.value.problem == "unreachable"
    assert time.monotonic() - started < WAIT_LIMIT
    await mailbox.connect()


async def test_kicked_connection_is_unreachable_then_reconnects(
    dovecot: Dovecot, mailbox: ImapMailbox
) -> None:
    await mailbox.connect()
    last = max(await mailbox.uids_after(0), default=0)
    await dovecot.kill_connections()
    with pytest.raises(MailboxUnavailable) as info:
        await asyncio.wait_for(mailbox.wait(WAIT_LIMIT), WAIT_LIMIT + 5)
    assert info.value.problem == "unreachable"
    await mailbox.connect()
    assert await mailbox.uids_after(last) == []


@pytest.mark.parametrize(
    ("cert", "key"),
    [
        (None, None),
        ("foreign_client_cert", "foreign_client_key"),
        ("expired_client_cert", "expired_client_key"),
    ],
    ids=["no-client-cert", "foreign-ca-client-cert", "expired-client-cert"],
)
async def test_client_certificate_refused_at_login(
    dovecot: Dovecot, pki: Pki, cert: str | None, key: str | None
) -> None:
    tls = TlsFiles(
        pki.ca_cert,
        None if cert is None else getattr(pki, cert),
        None if key is None else getattr(pki, key),
    )
    error = await _refusal(_settings(dovecot, pki, tls=tls))
    assert error.problem == "client_cert_refused"


@pytest.mark.parametrize(
    ("version", "client"),
    [("-tls1_3", "none"), ("-tls1_3", "foreign"), ("-tls1_2", "foreign")],
)
async def test_client_certificate_refused_during_handshake(
    pki: Pki, version: str, client: str
) -> None:
    """Unlike Dovecot, many TLS fronts refuse the certificate in the handshake; with TLS
    1.3 the client only learns it from an alert after its side of the handshake.
    (TLS 1.2 without a certificate gives a bare "handshake failure" alert: tls_error.)"""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = await asyncio.create_subprocess_exec(
        openssl,
        "s_server",
        "-quiet",
        "-accept",
        f"127.0.0.1:{port}",
        "-cert",
        str(pki.server_cert),
        "-key",
        str(pki.server_key),
        "-CAfile",
        str(pki.ca_cert),
        "-Verify",
        "1",
        "-verify_return_error",
        version,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    cert, key = (
        (None, None) if client == "none" else (pki.foreign_client_cert, pki.foreign_client_key)
    )
    settings = ImapSettings(
        "127.0.0.1", port, TlsFiles(pki.ca_cert, cert, key), "sg", "unused", timeout=5
    )
    try:
        for _ in range(100):  # until s_server listens
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.05)
        assert (await _refusal(settings)).problem == "client_cert_refused"
    finally:
        server.kill()
        await server.wait()


async def test_wrong_password_is_login_refused_without_echo(dovecot: Dovecot, pki: Pki) -> None:
    wrong = "Wr0ng-but-s3cret-password"
    settings = _settings(dovecot, pki, password=wrong)
    error = await _refusal(settings)
    assert error.problem == "login_refused"
    assert wrong not in str(error) and wrong not in repr(error) and wrong not in repr(settings)
    assert await ImapMailbox(settings).probe() == "login_refused"
    assert await ImapMailbox(_settings(dovecot, pki)).probe() is None


async def test_missing_folder(dovecot: Dovecot, pki: Pki) -> None:
    error = await _refusal(_settings(dovecot, pki, folder="NoSuchFolder"))
    assert error.problem == "folder_unavailable"


async def test_server_certificate_from_unknown_ca(dovecot: Dovecot, pki: Pki) -> None:
    tls = TlsFiles(pki.foreign_ca_cert, pki.client_cert, pki.client_key)
    error = await _refusal(_settings(dovecot, pki, tls=tls))
    assert error.problem == "unknown_ca"


@pytest.mark.parametrize(
    ("cert", "key", "problem"),
    [
        ("expired_server_cert", "expired_server_key", "expired"),
        ("wronghost_server_cert", "wronghost_server_key", "wrong_host"),
    ],
)
async def test_bad_server_certificate(
    dovecot: Dovecot, pki: Pki, tmp_path: Path, cert: str, key: str, problem: str
) -> None:
    async with Dovecot(
        tmp_path, pki, server_cert=getattr(pki, cert), server_key=getattr(pki, key)
    ) as server:
        error = await _refusal(_settings(server, pki))
    assert error.problem == problem


async def test_closed_port_is_unreachable(dovecot: Dovecot, pki: Pki, tmp_path: Path) -> None:
    server = Dovecot(tmp_path, pki)
    await server.start()
    settings = _settings(server, pki)
    await server.stop()
    assert (await _refusal(settings)).problem == "unreachable"


async def test_calls_before_connect_are_unreachable(dovecot: Dovecot, pki: Pki) -> None:
    box = ImapMailbox(_settings(dovecot, pki))
    with pytest.raises(MailboxUnavailable):
        await box.uids_after(0)
    await box.close()


async def test_missing_dovecot_says_how_to_install(tmp_path: Path, pki: Pki) -> None:
    server = Dovecot(tmp_path, pki, binary=tmp_path / "no-dovecot")
    with pytest.raises(RuntimeError, match="make test"):
        await server.start()


async def test_a_relative_working_directory_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make demo` runs in ``demo-data`` (relative): Dovecot reads its config's paths from
    its own directory, so every path handed to it must be absolute."""
    monkeypatch.chdir(tmp_path)
    lab = MailLab(Path("demo-data") / "mail")
    await lab.start()
    try:
        assert lab.dovecot is not None and lab.dovecot.imap_port
        assert Path(lab.mail_config()["ca_file"]).is_absolute()
    finally:
        await lab.stop()
