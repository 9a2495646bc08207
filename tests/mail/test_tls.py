"""tls.py without a server: the client context, local checks and error diagnosis."""

from __future__ import annotations

import datetime as dt
import errno
import socket
import ssl
from pathlib import Path

import aiosmtplib
import pytest
from cryptography import x509

from bridge.devtools.mailcerts import Pki, make_pki
from bridge.mail.tls import TlsConfigError, TlsFiles, client_context, diagnose, local_problems


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("tls-pki"))


def _not_after(path: Path) -> dt.datetime:
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc


def test_client_context_is_pinned_and_strict(pki: Pki) -> None:
    context = client_context(TlsFiles(pki.ca_cert, pki.client_cert, pki.client_key))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert context.cert_store_stats()["x509_ca"] == 1  # the pinned CA, no system store
    no_client = client_context(TlsFiles(pki.ca_cert, None, None))
    assert no_client.cert_store_stats()["x509_ca"] == 1


def test_client_context_errors(pki: Pki, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nS3CRETK3YMATERIALxyz\n")
    cases = {
        "ca_missing": TlsFiles(tmp_path / "none.pem", None, None),
        "ca_unreadable": TlsFiles(garbage, None, None),
        "client_cert_missing": TlsFiles(pki.ca_cert, tmp_path / "none.crt", pki.client_key),
        "client_key_missing": TlsFiles(pki.ca_cert, pki.client_cert, tmp_path / "none.key"),
        "client_cert_unreadable": TlsFiles(pki.ca_cert, pki.client_cert, garbage),
    }
    for reason, files in cases.items():
        with pytest.raises(TlsConfigError) as caught:
            client_context(files)
        assert caught.value.reason == reason
        assert "S3CRET" not in str(caught.value) and caught.value.__cause__ is None
    # A key that does not match the certificate.
    with pytest.raises(TlsConfigError) as mismatch:
        client_context(TlsFiles(pki.ca_cert, pki.client_cert, pki.server_key))
    assert mismatch.value.reason == "client_cert_unreadable"


def test_local_problems(pki: Pki, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    good = TlsFiles(pki.ca_cert, pki.client_cert, pki.client_key)
    assert local_problems(good, now) == []
    expired = TlsFiles(pki.ca_cert, pki.expired_client_cert, pki.expired_client_key)
    assert local_problems(expired, now) == ["client_cert_expired"]
    soon = _not_after(pki.client_cert) - dt.timedelta(days=10)
    assert local_problems(good, soon) == ["client_cert_expires_soon"]
    assert local_problems(good, now - dt.timedelta(days=30)) == ["client_cert_not_yet_valid"]
    assert local_problems(TlsFiles(pki.ca_cert, None, None), now) == ["client_cert_missing"]
    missing = TlsFiles(tmp_path / "ca.pem", tmp_path / "c.crt", tmp_path / "c.key")
    assert local_problems(missing, now) == ["ca_missing", "client_cert_missing"]
    no_key = TlsFiles(pki.ca_cert, pki.client_cert, tmp_path / "c.key")
    assert local_problems(no_key, now) == ["client_key_missing"]
    naive = now.replace(tzinfo=None)
    assert local_problems(expired, naive) == ["client_cert_expired"]


def _verify_error(code: int) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_code = code
    return error


def _wrapped(inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise aiosmtplib.SMTPConnectError("Error connecting") from exc
    except aiosmtplib.SMTPConnectError as outer:
        return outer


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (_verify_error(10), "expired"),
        (_verify_error(20), "unknown_ca"),
        (_verify_error(19), "unknown_ca"),
        (_verify_error(62), "wrong_host"),
        (_verify_error(64), "wrong_host"),
        (_wrapped(_verify_error(10)), "expired"),
        (ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] x"), "client_cert_refused"),
        (ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] x"), "client_cert_refused"),
        (ssl.SSLError(1, "[SSL: TLSV1_ALERT_PROTOCOL_VERSION] x"), "tls_version"),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] x"), "tls_error"),
        (
            aiosmtplib.SMTPException("SMTP STARTTLS extension not supported by server."),
            "no_starttls",
        ),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "unreachable"),
        (_wrapped(ConnectionRefusedError(errno.ECONNREFUSED, "refused")), "unreachable"),
        (socket.gaierror(socket.EAI_NONAME, "unknown host"), "unreachable"),
        (aiosmtplib.SMTPConnectTimeoutError("timed out"), "unreachable"),
        (aiosmtplib.SMTPReadTimeoutError("timed out"), "timeout"),
        (TimeoutError(), "timeout"),
        (TlsConfigError("client_cert_missing"), "client_cert_missing"),
        (ValueError("odd"), "tls_error"),
    ],
)
def test_diagnose(exc: BaseException, code: str) -> None:
    assert diagnose(exc) == code
