"""Configuration loading, environment overrides and the command line."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bridge.cli import main
from bridge.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def example(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    shutil.copy(ROOT / "config" / "example-config.yaml", path)
    return path


def test_example_config_needs_a_registration(example: Path) -> None:
    with pytest.raises(ConfigError, match=r"appservice\.registration: .* does not exist"):
        load_config(example)


def test_generate_registration_then_load(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = example.parent / "registration.yaml"
    assert main(["generate-registration", "-c", str(example), "-r", str(reg)]) == 0
    assert stat.S_IMODE(reg.stat().st_mode) == 0o600
    data = yaml.safe_load(reg.read_text())
    assert data["url"] == "http://127.0.0.1:29340"
    assert data["namespaces"]["users"][0] == {
        "regex": "@santeguard:sante\\.example",
        "exclusive": True,
    }
    assert data["namespaces"]["rooms"] == [{"regex": ".*", "exclusive": False}]
    assert data["as_token"] != data["hs_token"] and len(data["as_token"]) >= 40
    assert data["sender_localpart"] != "santeguard"
    cfg = load_config(example)
    assert cfg.appservice.as_token.get_secret_value() == data["as_token"]
    assert cfg.bot_mxid == "@santeguard:sante.example"
    assert cfg.bot.prefix == "!sg" and cfg.bot.language == "fr"
    # Refuses to overwrite (tokens would change under Synapse's feet).
    assert main(["generate-registration", "-c", str(example), "-r", str(reg)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["check-config", "-c", str(example)]) == 0


def test_environment_overrides_file(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        main(
            [
                "generate-registration",
                "-c",
                str(example),
                "-r",
                str(example.parent / "registration.yaml"),
            ]
        )
        == 0
    )
    monkeypatch.setenv("SANTEGUARD_APPSERVICE__AS_TOKEN", "from-env-token-123")
    monkeypatch.setenv("SANTEGUARD_BOT__LANGUAGE", "en")
    monkeypatch.setenv("SANTEGUARD_DATABASE__URI", "postgres://u@db/santeguard")
    cfg = load_config(example)
    assert cfg.appservice.as_token.get_secret_value() == "from-env-token-123"
    assert cfg.bot.language == "en"
    assert cfg.database.uri == "postgres://u@db/santeguard"
    monkeypatch.setenv("SANTEGUARD_BOT__LANGUAGE", "de")
    with pytest.raises(ConfigError, match=r"bot\.language: Input should be 'fr' or 'en'"):
        load_config(example)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {"bot": {"admins": ["admin"]}},
            "bot.admins: Value error, 'admin' is not a Matrix user ID",
        ),
        ({"database": {"uri": "mysql://x"}}, "database.uri: Value error, must be sqlite:///path"),
        (
            {"appservice": {"port": 0}},
            "appservice.port: Input should be greater than or equal to 1",
        ),
        ({"homeserver": {"typo": 1}}, "homeserver.typo: unknown key"),
    ],
)
def test_invalid_values_name_the_key(
    example: Path, patch: dict[str, dict[str, object]], message: str
) -> None:
    raw = yaml.safe_load(example.read_text())
    for section, values in patch.items():
        raw[section].update(values)
    raw["appservice"].update({"as_token": "a" * 20, "hs_token": "b" * 20})
    example.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_config(example)
    assert message in str(err.value)


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("homeserver: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_console_script_help() -> None:
    exe = Path(sys.executable).parent / "santeguard"
    for sub in ([], ["run"], ["generate-registration"], ["check-config"]):
        out = subprocess.run(
            [str(exe), *sub, "--help"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ},
        )
        assert "usage: santeguard" in out.stdout


def test_example_config_documents_every_key_and_matches_the_model() -> None:
    """Every key has a comment line above it, and the file lists every model field."""
    from bridge.config import Config

    lines = (ROOT / "config" / "example-config.yaml").read_text().splitlines()
    seen: set[str] = set()
    section = ""
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        key = stripped.split(":", 1)[0]
        above = lines[i - 1].strip()
        assert above.startswith("#"), f"line {i + 1} ({key}) has no comment above it"
        if line.startswith(" "):
            seen.add(f"{section}.{key}")
        else:
            section = key
    for name, field in Config.model_fields.items():
        sub = field.annotation
        for sub_name in getattr(sub, "model_fields", {}):
            if (name, sub_name) in {("appservice", "as_token"), ("appservice", "hs_token")}:
                continue  # documented in comments: they come from the registration file
            assert f"{name}.{sub_name}" in seen, f"{name}.{sub_name} missing from example config"
