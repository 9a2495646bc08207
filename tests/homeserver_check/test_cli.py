"""`santeguard check-homeserver` on good and bad homeserver.yaml files: the table, --json,
the exit status, SantéGuard's config (-c) and the live check's switch."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from bridge.devtools.testconfig import free_port
from tests.homeserver_check.cli_helpers import (
    AS_TOKEN,
    by_id,
    run,
    run_json,
    santeguard_config,
)
from tests.homeserver_check.configs import good

COMPARED = {"purge_interval", "retention_bounds", "retention_default", "federation"}


@pytest.fixture
def registration(tmp_path: Path) -> Path:
    path = tmp_path / "registration.yaml"
    path.write_text("id: santeguard\n")
    return path


@pytest.fixture
def unreachable(tmp_path: Path) -> Path:
    """config.yaml whose homeserver nobody listens at."""
    return santeguard_config(tmp_path, f"http://127.0.0.1:{free_port()}")


def bad(registration: Path) -> dict[str, object]:
    hs = good(registration)
    hs["retention"] = {"enabled": False}
    hs["enable_registration"] = True
    hs["url_preview_enabled"] = True
    hs.pop("federation_domain_whitelist")
    return hs


def test_good_file_without_config_is_incomplete(tmp_path: Path, registration: Path) -> None:
    out = run(good(registration), tmp_path / "hs.yaml", "-r", str(registration))
    assert out.returncode == 3, out.stdout
    lines = out.stdout.splitlines()
    assert "critique   [OK] rétention activée (retention.enabled: true)" in lines
    assert (
        "critique   [NON VÉRIFIÉ] utilisateur de contrôle administrateur du serveur "
        "(API d'administration) — vérification en direct : relancez avec -c config.yaml"
    ) in lines
    assert "[À CORRIGER]" not in out.stdout
    assert lines[-1] == "14 OK, 0 à corriger (dont 0 critiques), 5 non vérifiés"


def test_good_file_with_an_unreachable_homeserver(
    tmp_path: Path, registration: Path, unreachable: Path
) -> None:
    code, report = run_json(
        good(registration), tmp_path / "hs.yaml", "-r", str(registration), "-c", str(unreachable)
    )
    found = by_id(report)
    assert code == 3
    assert found["enforcer_admin"]["state"] == "not_checked"
    assert found["enforcer_admin"]["problem"].startswith("serveur injoignable à http://127.0.0.1:")
    assert {i for i, f in found.items() if f["state"] != "ok"} == {"enforcer_admin"}
    assert report["summary"] == {
        "ok": 18,
        "fix": 0,
        "not_checked": 1,
        "critical": 0,
        "warning": 0,
        "info": 0,
        "exit_code": 3,
    }
    assert AS_TOKEN not in str(report)


def test_no_live_says_it_was_skipped(tmp_path: Path, registration: Path, unreachable: Path) -> None:
    code, report = run_json(
        good(registration),
        tmp_path / "hs.yaml",
        "-r",
        str(registration),
        "-c",
        str(unreachable),
        "--no-live",
        "--lang",
        "en",
    )
    assert code == 3
    assert by_id(report)["enforcer_admin"]["problem"] == "live check switched off (--no-live)"


def test_bad_file_text(tmp_path: Path, registration: Path, unreachable: Path) -> None:
    out = run(
        bad(registration),
        tmp_path / "hs.yaml",
        "-r",
        str(registration),
        "-c",
        str(unreachable),
        "--lang",
        "en",
    )
    assert out.returncode == 1
    text = out.stdout
    assert (
        "critical  [TO FIX] retention enabled (retention.enabled: true) — retention is off: "
        "Synapse never purges anything, whatever the rooms' policies say\n"
        "    put in homeserver.yaml:\n"
        "      retention:\n"
        "        enabled: true\n"
    ) in text
    assert "critical  [TO FIX] registration closed (enable_registration) — anyone can" in text
    assert "    → or keep it invitation-only: registration_requires_token: true" in text
    assert (
        "warning   [TO FIX] URL previews off (url_preview_enabled: false)" in text
        and "      url_preview_enabled: false" in text
    )
    assert "      federation_domain_whitelist:\n      - partner.example" in text
    assert text.splitlines()[-1] == "12 OK, 6 to fix (3 critical), 1 not checked"
    assert AS_TOKEN not in text


def test_bad_file_json(tmp_path: Path, registration: Path, unreachable: Path) -> None:
    code, report = run_json(
        bad(registration), tmp_path / "hs.yaml", "-r", str(registration), "-c", str(unreachable)
    )
    assert code == 1
    found = by_id(report)
    to_fix = {i: f["severity"] for i, f in found.items() if f["state"] == "fix"}
    assert to_fix == {
        "retention": "critical",
        "retention_bounds": "warning",
        "retention_default": "warning",
        "open_registration": "critical",
        "federation": "critical",
        "url_previews": "warning",
    }
    assert set(found["retention"]) == {
        "id",
        "severity",
        "state",
        "check",
        "problem",
        "fix",
        "fix_yaml",
    }
    assert found["url_previews"]["fix_yaml"] == "url_preview_enabled: false"
    assert found["url_previews"]["problem"].startswith("le serveur va chercher les liens")
    assert found["encryption"] == {
        "id": "encryption",
        "severity": "critical",
        "state": "ok",
        "check": "chiffrement par défaut de tous les salons "
        "(encryption_enabled_by_default_for_room_type: all)",
        "problem": None,
        "fix": None,
        "fix_yaml": None,
    }
    assert report["summary"]["critical"] == 3 and report["summary"]["exit_code"] == 1


def test_warnings_only_exit_4(tmp_path: Path, registration: Path, unreachable: Path) -> None:
    hs = good(registration)
    hs["url_preview_enabled"] = True
    out = run(hs, tmp_path / "hs.yaml", "-r", str(registration), "-c", str(unreachable))
    assert out.returncode == 4, out.stdout


def test_registration_from_the_config(tmp_path: Path) -> None:
    """Without -r, the registration named by appservice.registration is checked."""
    reg = tmp_path / "registration.yaml"
    reg.write_text(
        yaml.safe_dump({"id": "santeguard", "as_token": AS_TOKEN, "hs_token": "hs-token-x1"})
    )
    cfg = santeguard_config(
        tmp_path, f"http://127.0.0.1:{free_port()}", registration="registration.yaml"
    )
    hs = good(reg)
    hs["app_service_config_files"] = ["registration.yaml"]
    code, report = run_json(hs, tmp_path / "hs.yaml", "-c", str(cfg), "--no-live")
    assert by_id(report)["registration"]["state"] == "ok"
    elsewhere = copy.deepcopy(hs)
    elsewhere["app_service_config_files"] = ["/etc/other/registration.yaml"]
    code, report = run_json(elsewhere, tmp_path / "hs.yaml", "-c", str(cfg), "--no-live")
    assert code == 1
    assert by_id(report)["registration"]["state"] == "fix"


def test_unusable_inputs_exit_2(tmp_path: Path, registration: Path) -> None:
    path = tmp_path / "hs.yaml"
    live = run(good(registration), path, "--live")
    assert live.returncode == 2 and "--live needs -c" in live.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("homeserver: {}\n")
    config = run(good(registration), path, "-c", str(broken))
    assert config.returncode == 2 and "homeserver" in config.stderr
    assert run(["a", "list"], path).returncode == 2
