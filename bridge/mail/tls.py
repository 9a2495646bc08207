"""TLS for MSSanté: pinned IGC-Santé CA, client certificate, and failures named by code.

IGC-Santé roots are in no public trust store and application mailboxes authenticate with
an "ORG AUTH_CLI" client certificate, so the client context trusts ONLY the configured CA
file and carries the client certificate. When a connection fails, ``diagnose`` turns the
exception into a short code an admin alert can explain ("expired", "unknown_ca", ...):
the raw OpenSSL text helps nobody at 3 a.m. ``local_problems`` checks the files ahead of
time, so an expiring certificate is announced before mail stops.
"""

from __future__ import annotations

import datetime as dt
import errno
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

EXPIRY_WARNING = dt.timedelta(days=30)

# OpenSSL X509_V_ERR_* verify codes (stable across OpenSSL 1.1 and 3).
_EXPIRED_CODES = frozenset({9, 10})  # not yet valid, has expired
_UNKNOWN_CA_CODES = frozenset({2, 18, 19, 20, 21})  # issuer unknown, self-signed, leaf only
_WRONG_HOST_CODES = frozenset({62, 64})  # hostname / IP address mismatch

# Alerts the server sends when it refuses OUR certificate (or its absence).
_CLIENT_CERT_ALERTS = (
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_REVOKED",
    "TLSV1_ALERT_UNKNOWN_CA",
    "TLSV1_ALERT_ACCESS_DENIED",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE",
)
_VERSION_REASONS = (
    "UNSUPPORTED_PROTOCOL",
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "NO_PROTOCOLS_AVAILABLE",
    "VERSION_TOO_LOW",
    "VERSION_TOO_HIGH",
)
_UNREACHABLE_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ETIMEDOUT,
        errno.EADDRNOTAVAIL,
        errno.ENOENT,  # unix socket path
    }
)


@dataclass(frozen=True)
class TlsFiles:
    """Where the pinned CA bundle and the client certificate live (PEM files)."""

    ca_file: Path
    client_cert: Path | None
    client_key: Path | None


class TlsConfigError(Exception):
    """The TLS files cannot be used; ``reason`` is a code, never file content."""

    def __init__(self, reason: str, path: Path | None = None) -> None:
        super().__init__(reason if path is None else f"{reason}: {path}")
        self.reason = reason
        self.path = path


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """A client context trusting only ``files.ca_file``, TLS 1.2+, with our certificate."""
    if not files.ca_file.is_file():
        raise TlsConfigError("ca_missing", files.ca_file)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_verify_locations(cafile=str(files.ca_file))
    except (ssl.SSLError, OSError, ValueError):
        raise TlsConfigError("ca_unreadable", files.ca_file) from None
    if files.client_cert is not None:
        if not files.client_cert.is_file():
            raise TlsConfigError("client_cert_missing", files.client_cert)
        if files.client_key is not None and not files.client_key.is_file():
            raise TlsConfigError("client_key_missing", files.client_key)
        try:
            context.load_cert_chain(
                str(files.client_cert),
                None if files.client_key is None else str(files.client_key),
                password=_no_password,
            )
        except (ssl.SSLError, OSError, ValueError):
            # `from None`: OpenSSL's text could echo a PEM fragment.
            raise TlsConfigError("client_cert_unreadable", files.client_cert) from None
    return context


def _no_password() -> str:
    """Encrypted keys are not supported: fail instead of prompting on the terminal."""
    raise ValueError("encrypted private keys are not supported")


def local_problems(files: TlsFiles, now: dt.datetime) -> list[str]:
    """Codes for what is wrong with the files themselves (no network)."""
    problems: list[str] = []
    if not files.ca_file.is_file():
        problems.append("ca_missing")
    if files.client_cert is None or not files.client_cert.is_file():
        problems.append("client_cert_missing")
        return problems
    if files.client_key is not None and not files.client_key.is_file():
        problems.append("client_key_missing")
    try:
        cert = x509.load_pem_x509_certificate(files.client_cert.read_bytes())
    except (OSError, ValueError):
        problems.append("client_cert_unreadable")
        return problems
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    if now < cert.not_valid_before_utc:
        problems.append("client_cert_not_yet_valid")
    elif now >= cert.not_valid_after_utc:
        problems.append("client_cert_expired")
    elif cert.not_valid_after_utc - now < EXPIRY_WARNING:
        problems.append("client_cert_expires_soon")
    return problems


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then its causes and contexts (libraries wrap the ssl error)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _from_verify(exc: ssl.SSLCertVerificationError) -> str:
    code = exc.verify_code
    if code in _EXPIRED_CODES:
        return "expired"
    if code in _UNKNOWN_CA_CODES:
        return "unknown_ca"
    if code in _WRONG_HOST_CODES:
        return "wrong_host"
    return "tls_error"


def _from_ssl(exc: ssl.SSLError) -> str | None:
    text = f"{getattr(exc, 'reason', None) or ''} {exc}".upper()
    if any(alert in text for alert in _CLIENT_CERT_ALERTS):
        return "client_cert_refused"
    if any(reason in text for reason in _VERSION_REASONS):
        return "tls_version"
    return None


def diagnose(exc: BaseException) -> str:
    """Map a connection failure (ssl, socket, aiosmtplib, aioimaplib) to a problem code.

    Codes: expired, unknown_ca, wrong_host, client_cert_refused, tls_version,
    no_starttls, unreachable, timeout (connected, then no answer in time), a
    ``TlsConfigError`` reason, and tls_error for anything else (including a TLS 1.3
    server that hung up right after the handshake without an alert: see ``smtp.py``).
    """
    chain = list(_chain(exc))
    for item in chain:
        if isinstance(item, TlsConfigError):
            return item.reason
        if isinstance(item, ssl.SSLCertVerificationError):
            return _from_verify(item)
    for item in chain:
        if isinstance(item, ssl.SSLError):
            code = _from_ssl(item)
            if code is not None:
                return code
    for item in chain:
        if "STARTTLS EXTENSION NOT SUPPORTED" in str(item).upper():
            return "no_starttls"
        if isinstance(item, socket.gaierror | ConnectionRefusedError):
            return "unreachable"
        if isinstance(item, OSError) and item.errno in _UNREACHABLE_ERRNOS:
            return "unreachable"
    for item in chain:
        if isinstance(item, ssl.SSLError):
            return "tls_error"
    for item in chain:
        if type(item).__name__ in ("SMTPConnectTimeoutError", "SMTPConnectError"):
            return "unreachable"
    if any(isinstance(item, TimeoutError) for item in chain):
        return "timeout"
    return "tls_error"
