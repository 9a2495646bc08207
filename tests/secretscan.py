"""Pytest plugin: no secret the run configured may appear in any log of the run.

Sibling of tests/logscan.py (message texts), loaded by tests/conftest.py. It

1. points ``SANTEGUARD_SECRETS_FILE`` at ``<basetemp>/secretscan/secrets.jsonl`` for the
   whole session (subprocesses, the demo's included, inherit it). The places that create
   secrets register them there (bridge/devtools/secretlog.py): ``make_config`` and the dev
   stack's config (as_token, hs_token, the gate token, the homeserver admin token, mail
   passwords, a database password, the audit key file), the mail lab's and Dovecot's IMAP
   passwords, every TLS private key ``mailcerts`` writes (its PEM body lines), read at the
   end. The test database's password (``SANTEGUARD_TEST_PG``) is registered here.
2. at the end of the session (``pytest_sessionfinish``, after logscan's capture is
   complete) searches what logscan captured (every record of the test process, through
   the product's filters) and every SantéGuard, dev Synapse and demo log file under the
   basetemp for each secret — as written, URL-encoded, JSON- or repr-escaped — and fails
   the run (exit status 1, a report naming the secret by label, never by value).

Records logged under ``santeguard.test`` are left out of the captured records: that is
where tests/test_secrets.py plants secrets to prove the product's scrubber masks them in
its own handler's output, which it checks itself.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from bridge.devtools import secretlog
from tests.logscan import log_files

SCAN_DIR = "secretscan"
REGISTRY_FILE = "secrets.jsonl"
PLANTING_LOGGER = "santeguard.test"
# A captured record starts "YYYY-MM-DD HH:MM:SS,mmm LEVEL logger: message"; lines that do
# not (tracebacks) belong to the record above.
_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ (\S+): ", re.M)


def forms(value: str) -> set[str]:
    """Every way ``value`` can be written into a log line."""
    out = {
        value,
        quote(value, safe=""),
        json.dumps(value)[1:-1],
        repr(value)[1:-1],
        repr(value.encode("utf-8"))[2:-1],
    }
    return {f for f in out if len(f) >= secretlog.MIN_SECRET_LEN}


@dataclass(frozen=True)
class SecretLeak:
    label: str
    path: Path
    line_no: int
    line: str  # with the secret masked

    def describe(self, limit: int = 200) -> str:
        line = self.line if len(self.line) <= limit else self.line[:limit] + "…"
        return f"{self.label} in {self.path}:{self.line_no}\n    {line}"


def without_planted(captured: str) -> str:
    """The captured records less those a test logged under ``santeguard.test``."""
    starts = [(m.start(), m.group(1)) for m in _RECORD_START.finditer(captured)]
    kept: list[str] = [captured[: starts[0][0]] if starts else captured]
    for i, (start, logger) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(captured)
        record = captured[start:end]
        if logger == PLANTING_LOGGER or logger.startswith(PLANTING_LOGGER + "."):
            record = "\n" * record.count("\n")  # blanked: line numbers stay the file's
        kept.append(record)
    return "".join(kept)


def search(secrets: Iterable[secretlog.Secret], where: Path, content: str) -> list[SecretLeak]:
    leaks: list[SecretLeak] = []
    for secret in secrets:
        variants = forms(secret.value)
        hits = [i for i in (content.find(v) for v in variants) if i >= 0]
        if not hits:
            continue
        at = min(hits)
        start = content.rfind("\n", 0, at) + 1
        end = content.find("\n", at)
        line = content[start : end if end >= 0 else len(content)]
        for variant in variants:
            line = line.replace(variant, "<secret>")
        leaks.append(SecretLeak(secret.label, where, content.count("\n", 0, at) + 1, line))
    return leaks


def scan(
    secrets: list[secretlog.Secret], captured: tuple[Path, str] | None, files: Iterable[Path]
) -> list[SecretLeak]:
    """Every (secret, log) where a registered secret appears."""
    leaks: list[SecretLeak] = []
    if captured is not None:
        leaks += search(secrets, captured[0], without_planted(captured[1]))
    for path in files:
        try:
            content = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue  # a test removed its own log (the demo without --keep)
        leaks += search(secrets, path, content)
    return leaks


class SecretScan:
    """The plugin's state for one session (registered as ``secretscan``)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        basetemp = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
        self.basetemp: Path = basetemp
        self.registry = basetemp / SCAN_DIR / REGISTRY_FILE
        self.secrets: list[secretlog.Secret] = []
        self.leaks: list[SecretLeak] = []
        self.scanned = 0
        self._old_env = os.environ.get(secretlog.ENV)

    def start(self) -> None:
        self.registry.parent.mkdir(parents=True, exist_ok=True)
        self.registry.write_text("", encoding="utf-8")
        os.environ[secretlog.ENV] = str(self.registry)
        secretlog.register_dsn(
            "test database password (SANTEGUARD_TEST_PG)",
            os.environ.get("SANTEGUARD_TEST_PG", ""),
        )

    def stop(self) -> None:
        if self._old_env is None:
            os.environ.pop(secretlog.ENV, None)
        else:
            os.environ[secretlog.ENV] = self._old_env

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.secrets = secretlog.read(self.registry)
        logscan: Any = self.config.pluginmanager.get_plugin("logscan")
        captured = None
        if logscan is not None and logscan.handler is not None:
            captured = (logscan.handler.path, logscan.handler.read_all())
        files = log_files(self.basetemp)
        self.scanned = len(files) + (captured is not None)
        self.leaks = scan(self.secrets, captured, files)
        if self.leaks and session.exitstatus in (
            pytest.ExitCode.OK,
            pytest.ExitCode.NO_TESTS_COLLECTED,
        ):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.leaks:
            if self.config.get_verbosity() >= 0:
                terminalreporter.write_line(
                    f"secretscan: {len(self.secrets)} secrets, none in {self.scanned} log(s)"
                )
            return
        terminalreporter.section("secrets found in logs", red=True)
        for leak in self.leaks:
            terminalreporter.write_line(leak.describe())
        terminalreporter.write_line(f"{len(self.leaks)} leak(s): the run fails.")


@pytest.hookimpl(trylast=True)  # after the tmpdir plugin set up the basetemp factory
def pytest_configure(config: pytest.Config) -> None:
    if config.option.collectonly or hasattr(config, "workerinput"):
        return
    scan_plugin = SecretScan(config)
    config.pluginmanager.register(scan_plugin, "secretscan")
    scan_plugin.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.pluginmanager.get_plugin("secretscan")
    if isinstance(plugin, SecretScan):
        plugin.stop()
        config.pluginmanager.unregister(plugin)
