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
GATE = "a-real-gate-token-for-the-tests-0123456789"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    shutil.copy(ROOT / "config" / "example-config.yaml", path)
    return path


@pytest.fixture
def gate_token(monkeypatch: pytest.MonkeyPatch) -> str:
    """The example's antispam token is a placeholder: give a real one, as an operator would."""
    monkeypatch.setenv("SANTEGUARD_ANTISPAM__TOKEN", GATE)
    return GATE


def test_example_config_needs_a_registration(example: Path) -> None:
    with pytest.raises(ConfigError, match=r"appservice\.registration: .* does not exist"):
        load_config(example)


def test_generate_registration_then_load(
    example: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
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
    # The example's gate token is a placeholder: refused until the operator sets one.
    assert main(["check-config", "-c", str(example)]) == 2
    assert "antispam.token: Value error, is still the example's placeholder" in (
        capsys.readouterr().err
    )
    monkeypatch.setenv("SANTEGUARD_ANTISPAM__TOKEN", GATE)
    cfg = load_config(example)
    assert cfg.appservice.as_token.get_secret_value() == data["as_token"]
    assert cfg.bot_mxid == "@santeguard:sante.example"
    assert cfg.bot.prefix == "!sg" and cfg.bot.language == "fr"
    # Refuses to overwrite (tokens would change under Synapse's feet).
    assert main(["generate-registration", "-c", str(example), "-r", str(reg)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["check-config", "-c", str(example)]) == 0


def test_environment_overrides_file(
    example: Path, monkeypatch: pytest.MonkeyPatch, gate_token: str
) -> None:
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
        (
            {"database": {"uri": "mysql://x"}},
            "database.uri: Value error, must be sqlite:relative/path.db, sqlite:///absolute",
        ),
        (
            {"database": {"uri": "sqlite://santeguard.db"}},
            "database.uri: Value error, must name a database file",
        ),
        ({"database": {"uri": "sqlite:"}}, "database.uri: Value error, must name a database"),
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
    raw["antispam"]["token"] = GATE
    example.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_config(example)
    assert message in str(err.value)
    assert str(err.value).count("\n") == 1  # that error only


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


# -- tokens: empty or placeholder values are refused by check-config and run -----------


def _config_with(tmp_path: Path, **sections: dict[str, object]) -> Path:
    """The example with real tokens, then ``sections`` merged in."""
    raw = yaml.safe_load((ROOT / "config" / "example-config.yaml").read_text())
    raw["appservice"].update({"as_token": "a" * 40, "hs_token": "b" * 40})
    del raw["appservice"]["registration"]  # the tokens are here, not in a registration
    raw["antispam"]["token"] = GATE
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize(
    ("section", "key", "value", "problem"),
    [
        ("antispam", "token", "change-me-to-a-long-random-string", "is still the example's"),
        ("antispam", "token", "", "is not set: the synchronous gate would refuse every callback"),
        ("antispam", "token", "   ", "is not set"),
        ("antispam", "token", None, "is not set"),
        ("appservice", "as_token", "", "is empty"),
        ("appservice", "hs_token", " ", "is empty"),
        (
            "appservice",
            "as_token",
            "This value is generated when generating the registration",
            "is still the example's placeholder",
        ),
        ("appservice", "hs_token", "change-me-to-a-long-random-string", "is still the example's"),
    ],
)
def test_empty_or_placeholder_tokens_stop_check_config_and_run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    section: str,
    key: str,
    value: str | None,
    problem: str,
) -> None:
    path = _config_with(tmp_path, **{section: {key: value}})
    assert main([command, "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{section}.{key}: Value error, {problem}" in err
    assert err.count("Value error") == 1
    if value and value.strip():
        assert value not in err  # the placeholder is a token value: never echoed


def test_missing_antispam_section_names_the_token(tmp_path: Path) -> None:
    raw = yaml.safe_load(_config_with(tmp_path).read_text())
    del raw["antispam"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"\n  antispam\.token: Value error, is not set"):
        load_config(path)


def test_placeholder_token_from_the_environment_is_refused_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _config_with(tmp_path)
    monkeypatch.setenv("SANTEGUARD_ANTISPAM__TOKEN", "change-me-to-a-long-random-string")
    with pytest.raises(ConfigError, match=r"antispam\.token: .* placeholder"):
        load_config(path)


def test_a_real_antispam_token_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config_with(tmp_path)
    assert main(["check-config", "-c", str(path)]) == 0
    out = capsys.readouterr()
    assert "Configuration OK" in out.out and out.err == ""
    assert load_config(path).antispam.token is not None


# -- relative paths are relative to the config file ------------------------------------


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from a directory that is not the config file's."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def test_how_mautrix_reads_sqlite_uris() -> None:
    """The meaning the example documents is the one mautrix gives (it parses with yarl)."""
    from mautrix.util.async_db import Database

    from bridge.config import sqlite_path
    from bridge.db.upgrade import build_upgrade_table

    for uri, path in [
        ("sqlite:///santeguard.db", "/santeguard.db"),  # the old example: filesystem root
        ("sqlite:santeguard.db", "santeguard.db"),
        ("sqlite:///var/lib/sg/sg.db", "/var/lib/sg/sg.db"),
        ("sqlite:data/sg%20x.db", "data/sg x.db"),
    ]:
        db = Database.create(uri, upgrade_table=build_upgrade_table())
        assert db._path == path  # type: ignore[attr-defined]
        assert sqlite_path(uri) == path


def test_relative_sqlite_path_is_relative_to_the_config_file(
    tmp_path: Path, elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    path = _config_with(conf_dir, database={"uri": "sqlite:data/santeguard.db"})
    cfg = load_config(path)
    assert cfg.database.uri == f"sqlite://{conf_dir}/data/santeguard.db"
    assert main(["check-config", "-c", str(path)]) == 0
    assert f"database sqlite {conf_dir}/data/santeguard.db" in capsys.readouterr().out


def test_example_database_is_next_to_the_config(
    tmp_path: Path, elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config_with(tmp_path)
    cfg = load_config(path)
    assert cfg.database.uri == f"sqlite://{tmp_path}/santeguard.db"
    assert cfg.encryption.store_path == str(tmp_path / "santeguard-crypto")
    assert main(["check-config", "-c", str(path)]) == 0
    assert "warning" not in capsys.readouterr().out


def test_relative_config_path_and_odd_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "a b#c"
    conf_dir.mkdir()
    _config_with(conf_dir, database={"uri": "sqlite:sg%25.db?mode=rwc"})
    monkeypatch.chdir(tmp_path)
    cfg = load_config(Path("a b#c") / "config.yaml")
    from bridge.config import sqlite_path

    assert sqlite_path(cfg.database.uri) == f"{conf_dir}/sg%.db"
    assert cfg.database.uri.endswith("?mode=rwc")


def test_absolute_paths_are_unchanged(tmp_path: Path, elsewhere: Path) -> None:
    path = _config_with(
        tmp_path,
        database={"uri": "sqlite:///var/lib/santeguard/sg.db"},
        encryption={"store_path": "/var/lib/santeguard/crypto"},
    )
    cfg = load_config(path)
    assert cfg.database.uri == "sqlite:///var/lib/santeguard/sg.db"
    assert cfg.encryption.store_path == "/var/lib/santeguard/crypto"
    pg = _config_with(tmp_path, database={"uri": "postgres://u@db/santeguard"})
    assert load_config(pg).database.uri == "postgres://u@db/santeguard"


def test_environment_paths_are_relative_to_the_config_file(
    tmp_path: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _config_with(tmp_path)
    monkeypatch.setenv("SANTEGUARD_DATABASE__URI", "sqlite:from-env.db")
    monkeypatch.setenv("SANTEGUARD_ENCRYPTION__STORE_PATH", "crypto-env")
    cfg = load_config(path)
    assert cfg.database.uri == f"sqlite://{tmp_path}/from-env.db"
    assert cfg.encryption.store_path == str(tmp_path / "crypto-env")


def test_database_at_the_filesystem_root_is_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config_with(tmp_path, database={"uri": "sqlite:///santeguard.db"})
    assert main(["check-config", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "database sqlite /santeguard.db" in out
    assert "warning: database.uri puts the SQLite database at the filesystem root" in out
    assert "write sqlite:santeguard.db" in out


@pytest.mark.parametrize(
    ("key", "section", "value", "existing"),
    [
        ("database.uri", "database", {"uri": "sqlite:santeguard.db"}, "santeguard.db"),
        ("encryption.store_path", "encryption", {"store_path": "crypto"}, "crypto"),
    ],
)
def test_data_left_in_the_working_directory_is_not_silently_replaced(
    tmp_path: Path,
    elsewhere: Path,
    key: str,
    section: str,
    value: dict[str, object],
    existing: str,
) -> None:
    """Relative paths used to mean the working directory: found there and not next to the
    config, the old data would be replaced by an empty database or a new device."""
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    path = _config_with(conf_dir, **{section: value})
    (elsewhere / existing).mkdir()
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{key}: '{existing}' is relative to the config file" in str(err.value)
    assert str(elsewhere / existing) in str(err.value)
    (conf_dir / existing).mkdir()  # moved next to the config: fine
    load_config(path)
