"""Secrets the development tools create, written down for the test suite's log scan.

Why: tests/secretscan.py searches every log of a test run for every secret the run
configured. Guessing them from configs would miss those made at test time (the dev
stack's tokens, TLS private keys, IMAP passwords, the audit signing key generated at the
first start), and the demo makes its own in a subprocess. So each place that creates
one calls :func:`register` (or :func:`register_file` for a key written to a file, read
back at scan time) and, when ``SANTEGUARD_SECRETS_FILE`` is set (the test plugin sets
it), one JSON line is appended there, which works across processes. Unset — production,
the demo run by hand — nothing is written anywhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from bridge.config import Config

ENV = "SANTEGUARD_SECRETS_FILE"
MIN_SECRET_LEN = 8  # shorter values would match ordinary words of a log


@dataclass(frozen=True)
class Secret:
    label: str  # what it is, for the report: never the value
    value: str


def _append(entry: dict[str, str]) -> None:
    target = os.environ.get(ENV)
    if not target:
        return
    line = json.dumps(entry) + "\n"
    # One write on an O_APPEND descriptor: lines from several processes never interleave.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def register(label: str, value: str | None) -> None:
    """A secret value just created or configured."""
    if value and len(value) >= MIN_SECRET_LEN:
        _append({"label": label, "value": value})


def register_file(label: str, path: Path) -> None:
    """A secret kept in a file (a private key, a key made at first start): read at scan
    time, when it exists."""
    _append({"label": label, "file": str(Path(path).resolve())})


def register_dsn(label: str, dsn: str) -> None:
    """The password of a database URI, if it has one."""
    try:
        password = urlsplit(dsn).password
    except ValueError:
        return
    register(label, password)


def _file_secrets(label: str, path: Path) -> list[Secret]:
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return []  # never created (the app did not start), or cleaned up
    if "-----BEGIN" not in text:
        return [Secret(label, text.strip())]
    # A PEM key: each line of its base64 body, so that a partial dump is caught too.
    return [
        Secret(label, line.strip())
        for line in text.splitlines()
        if line.strip() and not line.startswith("-----")
    ]


def read(path: Path) -> list[Secret]:
    """Every secret registered in ``path`` (files resolved now), without duplicates."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    found: dict[str, Secret] = {}
    for line in lines:
        entry = json.loads(line)
        label = str(entry["label"])
        secrets: Iterable[Secret] = (
            _file_secrets(label, Path(entry["file"]))
            if "file" in entry
            else [Secret(label, str(entry["value"]))]
        )
        for secret in secrets:
            if len(secret.value) >= MIN_SECRET_LEN:
                found.setdefault(secret.value, secret)
    return list(found.values())


def register_config(cfg: Config) -> None:
    """Every secret a SantéGuard configuration holds, by key, and its audit key file."""
    named = {
        "appservice.as_token": cfg.appservice.as_token,
        "appservice.hs_token": cfg.appservice.hs_token,
        "antispam.token": cfg.antispam.token,
        "directory.fhir_api_key": cfg.directory.fhir_api_key,
        "directory.homeserver_admin_token": cfg.directory.homeserver_admin_token,
        "mail.smtp_password": cfg.mail.smtp_password,
        "mail.imap_password": cfg.mail.imap_password,
        "audit.signing_key": cfg.audit.signing_key,
    }
    for label, value in named.items():
        register(label, value.get_secret_value() if value is not None else None)
    register_dsn("database.uri password", cfg.database.uri)
    register_file("audit signing key (audit.key_file)", Path(cfg.audit.key_file))
