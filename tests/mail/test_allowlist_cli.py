"""`santeguard mail allowlist import` as an operator runs it: atomic, and read by the bridge."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.test_cli_ops import _config

EXE = Path(sys.executable).parent / "santeguard"
SAMPLE = Path(__file__).resolve().parent.parent / "data" / "mail" / "listeblanche-sample.xml"


def _domains(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT domain FROM mail_allowlist")}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), *args], capture_output=True, text=True)


def test_import_replaces_the_list_and_a_bad_file_changes_nothing(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    out = _run("mail", "allowlist", "import", str(SAMPLE), "-c", str(cfg))
    assert out.returncode == 0, out.stderr
    assert "Liste blanche MSSanté importée : 5 domaine(s)" in out.stdout
    imported = _domains(tmp_path / "sg.db")
    assert len(imported) == 5 and all("." in d and d == d.lower() for d in imported)

    bad = tmp_path / "bad.xml"
    bad.write_text('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>')
    refused = _run("mail", "allowlist", "import", str(bad), "-c", str(cfg), "--lang", "en")
    assert refused.returncode == 1
    assert "Allow-list refused (malformed): the previous one stays in force." in refused.stderr
    assert _domains(tmp_path / "sg.db") == imported

    missing = _run("mail", "allowlist", "import", str(tmp_path / "nope.xml"), "-c", str(cfg))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert _domains(tmp_path / "sg.db") == imported
