"""`santeguard directory import` and `santeguard check-homeserver` as an operator runs them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bridge.devtools.stack import DevStack
from bridge.homeserver_check import check_homeserver

ROOT = Path(__file__).resolve().parent.parent
EXE = Path(sys.executable).parent / "santeguard"


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "config.yaml"
    shutil.copy(ROOT / "config" / "example-config.yaml", cfg)
    data = yaml.safe_load(cfg.read_text())
    data["database"]["uri"] = f"sqlite:///{tmp_path / 'sg.db'}"
    data["antispam"]["token"] = "gate-token-for-the-cli-tests-0123456789"
    cfg.write_text(yaml.safe_dump(data))
    subprocess.run(
        [
            str(EXE),
            "generate-registration",
            "-c",
            str(cfg),
            "-r",
            str(tmp_path / "registration.yaml"),
        ],
        check=True,
        capture_output=True,
    )
    return cfg


def test_directory_import_reports_rejections_and_completes(tmp_path: Path, data_dir: Path) -> None:
    cfg = _config(tmp_path)
    lines = (data_dir / "PS_LibreAcces_Personne_activite_sample.txt").read_text().splitlines()
    bad_key = lines[1].replace("|10999990012|810999990012|", "|10999990013|810999990013|")
    short = "8|10999990020|810999990020|DR|"
    extract = tmp_path / "extract.txt"
    extract.write_text("\n".join([lines[0], bad_key, short, *lines[2:]]) + "\n", encoding="utf-8")
    out = subprocess.run(
        [str(EXE), "directory", "import", str(extract), "-c", str(cfg)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "32 lignes lues, 30 gardées, 2 rejetées" in out.stdout
    assert "(lignes 2" in out.stdout and "(lignes 3" in out.stdout
    again = subprocess.run(
        [str(EXE), "directory", "import", str(extract), "-c", str(cfg), "--lang", "en"],
        capture_output=True,
        text=True,
    )
    assert "Import 2 of extract.txt: 32 lines read, 30 kept, 2 rejected" in again.stdout
    assert "(lines 2" in again.stdout and "(lines 3" in again.stdout


def test_directory_import_missing_file(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    out = subprocess.run(
        [str(EXE), "directory", "import", str(tmp_path / "nope.txt"), "-c", str(cfg)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "is not a file" in out.stderr


def test_check_homeserver_on_the_generated_config(tmp_path: Path) -> None:
    stack = DevStack(tmp_path / "s", db_uri=f"sqlite:///{tmp_path / 'x.db'}")
    hs = stack.synapse.build_config()
    gate_ids = {
        "encryption",
        "registration",
        "antispam",
        "callbacks",
        "unanswered",
        "fail_closed",
        "room_rules",
        "msc",
    }
    checks = {
        c.key: c.ok for c in check_homeserver(hs, stack.registration_path) if c.key in gate_ids
    }
    # The dev stack leaves encryption-by-default off (tests create clear admin rooms).
    assert checks == {
        "encryption": False,
        "registration": True,
        "antispam": True,
        "callbacks": True,
        "unanswered": True,
        "fail_closed": True,
        "room_rules": True,
        "msc": True,
    }
    hs["encryption_enabled_by_default_for_room_type"] = "all"
    path = tmp_path / "homeserver.yaml"
    path.write_text(yaml.safe_dump(hs))
    ok = subprocess.run(
        [
            str(EXE),
            "check-homeserver",
            "--homeserver-config",
            str(path),
            "-r",
            str(stack.registration_path),
            "--lang",
            "en",
        ],
        capture_output=True,
        text=True,
    )
    # Without -c, what compares with SantéGuard's config is not checked: said so (3).
    assert ok.returncode == 3, ok.stdout
    assert "[OK] every room encrypted by default" in ok.stdout
    del hs["modules"][0]["config"]["enabled_callbacks"]
    hs["modules"][0]["config"]["fail_open"]["check_event_for_spam"] = True
    path.write_text(yaml.safe_dump(hs))
    bad = subprocess.run(
        [str(EXE), "check-homeserver", "--homeserver-config", str(path)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert "[À CORRIGER] enabled_callbacks listés explicitement" in bad.stdout
    assert "[À CORRIGER] callbacks fermés en cas de panne" in bad.stdout
    # Without -r the registration was not checked: said so, never OK.
    assert "[NON VÉRIFIÉ] enregistrement SantéGuard dans app_service_config_files" in bad.stdout
    assert "relancez avec -r registration.yaml" in bad.stdout


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_check_homeserver_unreadable(tmp_path: Path, lang: str) -> None:
    out = subprocess.run(
        [
            str(EXE),
            "check-homeserver",
            "--homeserver-config",
            str(tmp_path / "missing.yaml"),
            "--lang",
            lang,
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "cannot read" in out.stderr
