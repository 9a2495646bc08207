"""The secret scan (tests/secretscan.py) catches a planted secret, from its real registry.

The secrets come from the places that create them (bridge/devtools/secretlog.py), here
pointed at a registry of this test's own, so the session's scan is not disturbed.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from bridge.audit.keys import load_signing_key
from bridge.devtools import secretlog
from bridge.devtools.dovecot import Dovecot
from bridge.devtools.mailcerts import make_pki
from tests.helpers import make_config
from tests.logscan import CaptureHandler, log_files
from tests.secretscan import scan


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "secrets.jsonl"
    monkeypatch.setenv(secretlog.ENV, str(path))
    return path


@pytest.fixture
def outside() -> Iterator[Path]:
    """Where planted logs go: outside the basetemp, which the session's own scan reads."""
    path = Path(tempfile.mkdtemp(prefix="sg-secretscan-"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


def write_log(where: Path, name: str, text: str) -> Path:
    path = where / "run" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_configured_tokens_and_the_audit_key_are_caught(
    registry: Path, tmp_path: Path, outside: Path
) -> None:
    cfg = make_config(f"sqlite:///{tmp_path / 'x.db'}", appservice={"hs_token": "hs/tok+en=9"})
    load_signing_key(cfg.audit, create=True)  # as the first start does
    secrets = secretlog.read(registry)
    labels = {s.label for s in secrets}
    assert {"appservice.as_token", "appservice.hs_token", "antispam.token"} <= labels
    seed = Path(cfg.audit.key_file).read_text().strip()
    assert secretlog.Secret("audit signing key (audit.key_file)", seed) in secrets
    clean = write_log(outside, "santeguard.log", "INFO all good, token=***\n")
    assert scan(secrets, None, [clean]) == []
    # Planted as written, URL-encoded (in a URL), JSON-escaped (a JSON log line).
    leaky = write_log(
        outside,
        "santeguard.log",
        f"INFO fine\nDEBUG GET /x?access_token={quote('hs/tok+en=9', safe='')}\n"
        f'{{"msg": "key {json.dumps(seed)[1:-1]}"}}\n',
    )
    assert cfg.antispam.token is not None
    gate_token = cfg.antispam.token.get_secret_value()
    synapse = write_log(outside, "homeserver.log", f"WARNING sent {gate_token}\n")
    assert set(log_files(outside)) == {leaky, synapse}
    leaks = scan(secrets, None, log_files(outside))
    found = {(leak.label, leak.path.name, leak.line_no) for leak in leaks}
    assert found == {
        ("appservice.hs_token", "santeguard.log", 2),
        ("audit signing key (audit.key_file)", "santeguard.log", 3),
        ("antispam.token", "homeserver.log", 1),
    }
    for leak in leaks:  # the report names the secret, never shows it
        assert "<secret>" in leak.describe()
        assert seed not in leak.describe() and "tok%2Ben" not in leak.describe()


def test_tls_private_keys_and_imap_passwords_are_caught(
    registry: Path, tmp_path: Path, outside: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    dovecot = Dovecot(tmp_path / "dovecot", pki)  # not started: its password is made here
    secrets = secretlog.read(registry)
    assert secretlog.Secret("Dovecot IMAP password", dovecot.password) in secrets
    key_line = pki.client_key.read_text().splitlines()[2]  # one line of the PEM body
    assert any(s.value == key_line for s in secrets)
    log = write_log(outside, "santeguard.log", "ERROR handshake failed\n")
    assert scan(secrets, None, [log]) == []
    log.write_text(f"ERROR dump b'{key_line}'\nERROR login {dovecot.password}\n")
    labels = sorted(leak.label for leak in scan(secrets, None, [log]))
    assert labels == ["Dovecot IMAP password", "TLS private key (PEM body)"]


def test_captured_records_are_scanned_except_the_scrubber_tests_plants(
    registry: Path, tmp_path: Path
) -> None:
    secretlog.register("planted", "planted-secret-value-1234")
    handler = CaptureHandler(tmp_path / "records.log")
    logger = logging.getLogger("santeguard.secretscan-selftest")
    logger.addHandler(handler)
    planting = logging.getLogger("santeguard.test")
    planting.addHandler(handler)
    try:
        planting.error("leak attempt %s", "planted-secret-value-1234")
        secrets = secretlog.read(registry)
        assert scan(secrets, (handler.path, handler.read_all()), []) == []
        logger.warning("oops %s", "planted-secret-value-1234")
        leaks = scan(secrets, (handler.path, handler.read_all()), [])
    finally:
        logger.removeHandler(handler)
        planting.removeHandler(handler)
        handler.close()
    assert [(leak.label, leak.line_no) for leak in leaks] == [("planted", 2)]
