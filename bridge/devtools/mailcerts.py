"""A throw-away PKI for mail tests: a CA standing in for IGC-Santé, and every bad certificate.

MSSanté relies on mutual TLS with certificates from a CA that no public trust store holds,
so the tests need one too, plus the certificates a real deployment gets wrong: an expired
server or client certificate, a server certificate for another host, and a second CA whose
certificates must be refused. Dovecot also demands a CRL for client certificates
(``ssl_require_crl``), hence the empty CRL and the ``ca_with_crl`` bundle.

Keys are EC P-256 (fast to generate), written 0600. Nothing here is for production.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bridge.devtools import secretlog

CLIENT_COMMON_NAME = "SantéGuard ORG AUTH_CLI"


@dataclass(frozen=True)
class Pki:
    """Paths of the generated PEM files (certificates and their keys)."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    foreign_ca_cert: Path
    foreign_ca_key: Path
    foreign_client_cert: Path
    foreign_client_key: Path
    foreign_server_cert: Path
    foreign_server_key: Path
    expired_server_cert: Path
    expired_server_key: Path
    wronghost_server_cert: Path
    wronghost_server_key: Path
    expired_client_cert: Path
    expired_client_key: Path
    crl: Path
    ca_with_crl: Path
    client_common_name: str


@dataclass(frozen=True)
class _Issuer:
    name: x509.Name
    key: ec.EllipticCurvePrivateKey


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SantéGuard tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(0o600)
    secretlog.register_file("TLS private key (PEM body)", path)  # tests/secretscan.py


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _ca(common_name: str, now: dt.datetime) -> tuple[_Issuer, x509.Certificate]:
    key = _new_key()
    name = _name(common_name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Issuer(name, key), cert


def _leaf(
    issuer: _Issuer,
    common_name: str,
    *,
    server: bool,
    validity: tuple[dt.datetime, dt.datetime],
    sans: list[x509.GeneralName] | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _new_key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(issuer.key, hashes.SHA256())


def _empty_crl(issuer: _Issuer, now: dt.datetime) -> x509.CertificateRevocationList:
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.name)
        .last_update(now - dt.timedelta(days=1))
        .next_update(now + dt.timedelta(days=3650))
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .sign(issuer.key, hashes.SHA256())
    )


def make_pki(
    directory: Path,
    hostname: str = "localhost",
    *,
    client_common_name: str = CLIENT_COMMON_NAME,
) -> Pki:
    """Generate the whole test PKI under ``directory`` (created; existing files replaced)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    valid = (now - dt.timedelta(days=1), now + dt.timedelta(days=825))
    expired = (now - dt.timedelta(days=60), now - dt.timedelta(days=1))
    host_sans: list[x509.GeneralName] = [
        x509.DNSName(hostname),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    wrong_sans: list[x509.GeneralName] = [x509.DNSName("wrong.example")]

    ca, ca_cert = _ca("SantéGuard Test CA", now)
    foreign, foreign_cert = _ca("Foreign Test CA", now)
    server_cn = f"SantéGuard test server {hostname}"
    items: dict[str, tuple[ec.EllipticCurvePrivateKey, x509.Certificate]] = {
        "ca": (ca.key, ca_cert),
        "foreign_ca": (foreign.key, foreign_cert),
        "server": _leaf(ca, server_cn, server=True, sans=host_sans, validity=valid),
        "client": _leaf(ca, client_common_name, server=False, validity=valid),
        "foreign_client": _leaf(foreign, client_common_name, server=False, validity=valid),
        "foreign_server": _leaf(foreign, server_cn, server=True, sans=host_sans, validity=valid),
        "expired_server": _leaf(ca, server_cn, server=True, sans=host_sans, validity=expired),
        "wronghost_server": _leaf(
            ca, "SantéGuard wrong host", server=True, sans=wrong_sans, validity=valid
        ),
        "expired_client": _leaf(ca, client_common_name, server=False, validity=expired),
    }
    paths: dict[str, Path] = {}
    for stem, (key, cert) in items.items():
        paths[f"{stem}_cert"] = directory / f"{stem}.crt"
        paths[f"{stem}_key"] = directory / f"{stem}.key"
        _write_cert(paths[f"{stem}_cert"], cert)
        _write_key(paths[f"{stem}_key"], key)

    crl_pem = _empty_crl(ca, now).public_bytes(serialization.Encoding.PEM)
    crl_path = directory / "ca.crl"
    crl_path.write_bytes(crl_pem)
    bundle = directory / "ca_with_crl.pem"
    bundle.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM) + crl_pem)
    return Pki(
        directory=directory,
        crl=crl_path,
        ca_with_crl=bundle,
        client_common_name=client_common_name,
        **paths,
    )
