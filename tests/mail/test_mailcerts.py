"""The test PKI has the properties the mail tests rely on (fast: no network)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bridge.devtools.mailcerts import CLIENT_COMMON_NAME, Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_all_files_exist_and_keys_are_private(pki: Pki) -> None:
    for name, value in vars(pki).items():
        if isinstance(value, Path) and name != "directory":
            assert value.is_file(), name
            if name.endswith("_key"):
                assert stat.S_IMODE(value.stat().st_mode) == 0o600, name


def test_ca_is_a_ca(pki: Pki) -> None:
    ca = _cert(pki.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign


def test_server_cert_names_and_usage(pki: Pki) -> None:
    server = _cert(pki.server_cert)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert _eku(server) == [ExtendedKeyUsageOID.SERVER_AUTH]
    wrong = _cert(pki.wronghost_server_cert)
    wrong_san = wrong.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert wrong_san.get_values_for_type(x509.DNSName) == ["wrong.example"]
    assert wrong_san.get_values_for_type(x509.IPAddress) == []


def test_client_certs(pki: Pki) -> None:
    ca = _cert(pki.ca_cert)
    for path in (pki.client_cert, pki.expired_client_cert):
        client = _cert(path)
        assert _eku(client) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        cn = client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert cn == CLIENT_COMMON_NAME
        client.verify_directly_issued_by(ca)
    foreign = _cert(pki.foreign_client_cert)
    foreign.verify_directly_issued_by(_cert(pki.foreign_ca_cert))
    with pytest.raises(ValueError):
        foreign.verify_directly_issued_by(ca)
    _cert(pki.foreign_server_cert).verify_directly_issued_by(_cert(pki.foreign_ca_cert))


def test_expired_certs_are_expired(pki: Pki) -> None:
    now = dt.datetime.now(dt.UTC)
    for path in (pki.expired_server_cert, pki.expired_client_cert):
        assert _cert(path).not_valid_after_utc < now
    for path in (pki.server_cert, pki.client_cert, pki.ca_cert):
        assert _cert(path).not_valid_before_utc < now < _cert(path).not_valid_after_utc


def test_crl_is_empty_signed_and_bundled(pki: Pki) -> None:
    crl = x509.load_pem_x509_crl(pki.crl.read_bytes())
    ca = _cert(pki.ca_cert)
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert len(crl) == 0
    bundle = pki.ca_with_crl.read_bytes()
    assert b"BEGIN CERTIFICATE" in bundle and b"BEGIN X509 CRL" in bundle


def test_openssl_accepts_the_chain(pki: Pki) -> None:
    """ssl itself loads every pair and the CA (catches key/cert mismatches)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_verify_locations(cafile=str(pki.ca_with_crl))
    for stem in ("server", "client", "expired_server", "wronghost_server", "expired_client"):
        ctx.load_cert_chain(getattr(pki, f"{stem}_cert"), getattr(pki, f"{stem}_key"))
    ctx.load_cert_chain(pki.foreign_client_cert, pki.foreign_client_key)


def test_custom_client_name(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, "mail.test", client_common_name="sg")
    client = _cert(pki.client_cert)
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "sg"
    server = _cert(pki.server_cert)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mail.test"]
