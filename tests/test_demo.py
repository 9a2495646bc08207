"""`make demo` runs its whole scenario and leaves no process behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.synapse


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_demo_runs_once_and_cleans_up(tmp_path: Path, lang: str) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bridge.devtools.demo",
            "--once",
            "--lang",
            lang,
            "--workdir",
            str(workdir),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    if lang == "fr":
        assert "bot : pong" in out
        assert "chaîne de hachage intacte" in out
        assert out.count("REFUSÉ par le homeserver") == 4  # clear room, invite, join, message
        assert "n'exerce plus selon l'Annuaire Santé" in out
        assert "déchiffrée par le Dr Exemple : **Chiffrement de ce salon**" in out
        assert "ce que le serveur stocke : m.room.encrypted (m.megolm.v1.aes-sha2)" in out
    else:
        assert "bot: pong" in out
        assert "hash chain intact" in out
        assert out.count("REFUSED by the homeserver") == 4
    # No synapse left running from this workdir.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(workdir) not in ps
    log = (workdir / "santeguard.log").read_text()
    registration = (workdir / "registration.yaml").read_text()
    for line in registration.splitlines():
        if line.startswith(("as_token:", "hs_token:")):
            assert line.split(":", 1)[1].strip() not in log
