"""The `mail:` section as `santeguard check-config` sees it: incomplete or impossible
settings are refused by name, missing certificate files are reported before a run."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bridge.devtools.mailcerts import make_pki
from tests.mail.test_allowlist_cli import EXE
from tests.test_config_cli import _config_with

MAIL = {
    "enabled": True,
    "address": "cpts@cpts.mssante.fr",
    "imap_username": "cpts",
    "imap_password": "not-a-real-password-123",
}


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXE), "check-config", "-c", str(path)], capture_output=True, text=True
    )


def test_enabled_without_its_keys_names_them(tmp_path: Path) -> None:
    out = _check(_config_with(tmp_path, mail={"enabled": True}))
    assert out.returncode == 2
    assert "address, ca_file, client_cert, client_key, imap_username, imap_password" in out.stderr


def test_mail_without_the_encrypted_device_is_refused(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    files = {
        "ca_file": str(pki.ca_cert),
        "client_cert": str(pki.client_cert),
        "client_key": str(pki.client_key),
    }
    cfg = _config_with(tmp_path, mail={**MAIL, **files}, encryption={"enabled": False})
    out = _check(cfg)
    assert out.returncode == 2 and "mail.enabled needs encryption.enabled" in out.stderr
    assert "not-a-real-password" not in out.stderr + out.stdout


def test_missing_or_expired_certificate_files_are_reported(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    files = {
        "ca_file": str(tmp_path / "absent.pem"),
        "client_cert": str(pki.expired_client_cert),
        "client_key": str(pki.expired_client_key),
    }
    out = _check(_config_with(tmp_path, mail={**MAIL, **files}))
    assert out.returncode == 0, out.stderr
    assert "warning: mail: the CA bundle (ca_file) is missing (ca_missing)" in out.stdout
    assert "(client_cert_expired)" in out.stdout
    good = {
        "ca_file": str(pki.ca_cert),
        "client_cert": str(pki.client_cert),
        "client_key": str(pki.client_key),
    }
    clean = _check(_config_with(tmp_path, mail={**MAIL, **good}))
    assert clean.returncode == 0 and "warning" not in clean.stdout
