"""Running `santeguard check-homeserver` as an operator does, on files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.homeserver_check.configs import PARTNER, SERVER

EXE = Path(sys.executable).parent / "santeguard"
AS_TOKEN = "as-token-for-the-homeserver-check-4f1e9a"


def santeguard_config(
    directory: Path,
    address: str,
    *,
    as_token: str = AS_TOKEN,
    domain: str = SERVER,
    registration: str | None = None,
    enforcer_username: str = "santeguard_control",
) -> Path:
    appservice: dict[str, Any] = {
        "address": "http://127.0.0.1:29340",
        "as_token": as_token,
        "hs_token": "hs-token-for-the-homeserver-check-8c2d",
        "enforcer_username": enforcer_username,
    }
    if registration is not None:
        appservice = {
            "address": "http://127.0.0.1:29340",
            "registration": registration,
            "enforcer_username": enforcer_username,
        }
    data = {
        "homeserver": {"address": address, "domain": domain},
        "appservice": appservice,
        "antispam": {"token": "gate-token-for-the-homeserver-check-77aa"},
        "database": {"uri": f"sqlite:///{directory / 'sg.db'}"},
        "gate": {"allowed_servers": [PARTNER]},
        "directory": {"psc_idp_id": "psc"},
        "retention": {
            "default_max_lifetime": "180d",
            "min_lifetime": "1d",
            "max_lifetime": "365d",
            "purge_interval": "1d",
        },
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def run(hs: Any, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    if hs is not None:
        path.write_text(yaml.safe_dump(hs), encoding="utf-8")
    return subprocess.run(
        [str(EXE), "check-homeserver", "--homeserver-config", str(path), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_json(hs: Any, path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    out = run(hs, path, "--json", *extra)
    assert out.stderr == "", out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    return out.returncode, report


def by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["id"]: f for f in report["findings"]}
