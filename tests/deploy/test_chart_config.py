"""What the chart hands SantéGuard and Synapse: the config a pod reads is accepted by
`santeguard check-config`, the registration is the one `generate-registration` builds,
the homeserver.yaml blocks of the release notes pass `check-homeserver`, and the values'
schema follows the configuration model."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from bridge.cli import main
from bridge.config import Config, load_config
from bridge.devtools.mailcerts import make_pki
from bridge.homeserver_check import check_homeserver, network_from_config
from bridge.homeserver_check.model import State, duration_text
from bridge.registration import build_registration
from bridge.retention.policy import parse_duration
from tests.deploy.chart import (
    CHART,
    MINIMAL,
    ROOT,
    Pod,
    Release,
    merged,
    production_values,
    render,
    start_pod,
)

SANTEGUARD = Path(sys.executable).with_name("santeguard")


def _existing_secrets(tmp: Path) -> dict[str, dict[str, str]]:
    """The Secrets an admin creates before installing with values-production.yaml."""
    pki = make_pki(tmp / "pki", "smtp.operateur-mssante.fr")
    return {
        "santeguard-tokens": {
            "as_token": "as-token-from-the-admins-secret-0123456789",
            "hs_token": "hs-token-from-the-admins-secret-0123456789",
            "antispam_token": "antispam-token-from-the-admins-secret-0123",
        },
        "santeguard-audit": {"signing_key": base64.b64encode(bytes(range(32))).decode()},
        "santeguard-directory": {"fhir_api_key": "fhir-key-from-the-admins-secret"},
        "santeguard-mail": {"imap_password": "imap-password-from-the-admins-secret"},
        "santeguard-mail-tls": {
            "ca.crt": pki.ca_cert.read_text(),
            "tls.crt": pki.client_cert.read_text(),
            "tls.key": pki.client_key.read_text(),
        },
        "santeguard-db": {"password": "db-password-from-the-admins-secret"},
    }


def _check_config_process(pod: Pod) -> subprocess.CompletedProcess[str]:
    """`santeguard check-config` as a process with exactly the pod's environment."""
    assert SANTEGUARD.is_file(), f"{SANTEGUARD} missing: pip install -e . first"
    argv = list(pod.argv)
    assert argv[:2] == ["santeguard", "run"], argv
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANTEGUARD_")}
    return subprocess.run(
        [str(SANTEGUARD), "check-config", *argv[2:]],
        env={**env, **pod.env},
        cwd=pod.root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _check_config(
    pod: Pod, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """The same in this process (importing SantéGuard takes seconds): its exit status,
    standard output and error."""
    argv = list(pod.argv)
    assert argv[:2] == ["santeguard", "run"], argv
    _environment(pod, monkeypatch)
    monkeypatch.chdir(pod.root)
    capsys.readouterr()
    status = main(["check-config", *argv[2:]])
    out = capsys.readouterr()
    return status, out.out, out.err


def _environment(pod: Pod, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("SANTEGUARD_")]:
        monkeypatch.delenv(key)
    for key, value in pod.env.items():
        monkeypatch.setenv(key, value)


def _load(pod: Pod, monkeypatch: pytest.MonkeyPatch) -> Config:
    _environment(pod, monkeypatch)
    return load_config(pod.config_path)


def test_default_install_config_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rel = render(MINIMAL)
    pod = start_pod(rel, tmp_path / "pod")
    status, out, err = _check_config(pod, monkeypatch, capsys)
    assert status == 0, err
    assert out.startswith("Configuration OK: bot @santeguard:sante.example")
    assert "database postgresql, listening on 0.0.0.0:29340" in out
    assert "warning" not in out + err
    cfg = _load(pod, monkeypatch)
    assert cfg.database.uri == (
        "postgresql://santeguard:db-password-for-tests@postgres.db.svc.cluster.local:5432/santeguard"
    )
    assert cfg.cluster.replica_id == "sg-santeguard-5d9c7b8f6-x2x7q"
    assert cfg.encryption.store_in_database is True
    assert cfg.encryption.store_path == str(pod.root / "var/lib/santeguard/crypto")
    assert cfg.audit.checkpoint_file.startswith(str(pod.root / "var/lib/santeguard/"))
    assert cfg.audit.signing_key is not None
    assert cfg.appservice.address == "http://sg-santeguard.matrix.svc.cluster.local:29340"
    tokens = rel.secret_data("sg-santeguard")
    assert cfg.appservice.as_token.get_secret_value() == tokens["as_token"]
    assert cfg.antispam.token is not None
    assert cfg.antispam.token.get_secret_value() == tokens["antispam_token"]
    assert cfg.logging.format == "json"
    # No secret in the ConfigMap.
    for secret in (*tokens.values(), "db-password-for-tests"):
        assert secret not in rel.config_yaml()


def test_production_install_config_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rel = render(production_values(), namespace="santeguard")
    existing = _existing_secrets(tmp_path)
    # Every group has an existingSecret (the database password too): the chart makes no
    # Secret of its own, and generates nothing.
    assert rel.all("Secret") == []
    pod = start_pod(rel, tmp_path / "pod", existing=existing)
    # As a process: the console script, with nothing but the pod's environment.
    done = _check_config_process(pod)
    assert done.returncode == 0, done.stderr
    assert "Configuration OK: bot @santeguard:chu-exemple.sante.fr" in done.stdout
    # The mail certificates are mounted where config.yaml says, readable and valid.
    assert "warning" not in done.stdout + done.stderr
    cfg = _load(pod, monkeypatch)
    assert cfg.database.uri == (
        "postgresql://santeguard:db-password-from-the-admins-secret"
        "@pg-santeguard.db.svc.cluster.local:5432/santeguard?sslmode=require"
    )
    assert cfg.mail.enabled and cfg.mail.imap_password is not None
    assert cfg.mail.imap_password.get_secret_value() == "imap-password-from-the-admins-secret"
    assert cfg.mail.smtp_password is None  # optional key, absent from the admin's Secret
    assert cfg.mail.client_key == str(pod.root / "etc/santeguard/mail-tls/tls.key")
    assert Path(cfg.mail.client_key).read_text() == existing["santeguard-mail-tls"]["tls.key"]
    assert cfg.directory.source == "fhir" and cfg.directory.fhir_api_key is not None
    assert cfg.directory.homeserver_admin_token is None
    assert cfg.audit.signing_key is not None
    assert cfg.audit.signing_key.get_secret_value() == existing["santeguard-audit"]["signing_key"]
    assert cfg.appservice.id == "santeguard-chu"
    assert cfg.cluster.refresh_seconds == 30
    assert cfg.retention.default_max_lifetime == "90d"


def test_a_wrong_config_is_refused_by_check_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config can fail: the same pod without its as_token Secret key."""
    rel = render(MINIMAL)
    pod = start_pod(rel, tmp_path / "pod")
    env = {k: v for k, v in pod.env.items() if k != "SANTEGUARD_APPSERVICE__AS_TOKEN"}
    broken = Pod(root=pod.root, env=env, config_path=pod.config_path, argv=pod.argv)
    status, _, err = _check_config(broken, monkeypatch, capsys)
    assert status == 2
    assert "appservice.as_token" in err


def _registration(rel: Release, release_name: str) -> dict[str, Any]:
    files = rel.secret_data(f"{release_name}-santeguard-registration")
    reg = yaml.safe_load(files["registration.yaml"])
    assert isinstance(reg, dict)
    return reg


@pytest.mark.parametrize(
    ("domain", "bot"),
    [("sante.example", "santeguard"), ("chu-exemple.sante.fr", "sante-guard")],
)
def test_registration_is_what_generate_registration_builds(domain: str, bot: str) -> None:
    values = merged(
        MINIMAL,
        {
            "config": {
                "homeserver": {"domain": domain},
                "appservice": {"bot_username": bot, "enforcer_username": f"{bot}_control"},
            }
        },
    )
    rel = render(values)
    secret = rel.one("Secret", "sg-santeguard-registration")
    assert secret["metadata"]["namespace"] == "matrix"
    files = rel.secret_data("sg-santeguard-registration")
    reg = yaml.safe_load(files["registration.yaml"])
    tokens = rel.secret_data("sg-santeguard")
    service = rel.one("Service")
    url = f"http://{service['metadata']['name']}.matrix.svc.cluster.local:29340"
    expected = build_registration(
        service_id="santeguard",
        url=url,
        domain=domain,
        bot_username=bot,
        as_token=tokens["as_token"],
        hs_token=tokens["hs_token"],
        sender_localpart=reg["sender_localpart"],
    )
    assert reg == expected
    # The random part build_registration would draw is derived from the release instead,
    # so that upgrades keep it.
    assert reg["sender_localpart"].startswith(f"{bot}_as_")
    assert len(reg["sender_localpart"]) == len(bot) + 4 + 8
    upgraded = render(merged(values, {"image": {"tag": "0.1.1"}}))
    assert _registration(upgraded, "sg")["sender_localpart"] == reg["sender_localpart"]
    other = _registration(render(values, name="sg2"), "sg2")
    assert other["sender_localpart"] != reg["sender_localpart"]
    assert files["antispam_token"] == tokens["antispam_token"]
    assert len(tokens["as_token"]) == 64 and tokens["as_token"] != tokens["hs_token"]


def test_registration_can_go_to_synapses_namespace() -> None:
    rel = render(merged(MINIMAL, {"registration": {"namespace": "synapse"}}), namespace="sg")
    assert rel.one("Secret", "sg-santeguard-registration")["metadata"]["namespace"] == "synapse"
    reg = yaml.safe_load(rel.secret_data("sg-santeguard-registration")["registration.yaml"])
    assert reg["url"] == "http://sg-santeguard.sg.svc.cluster.local:29340"


def _homeserver_block(notes: str) -> dict[str, Any]:
    block = notes.split("# --- homeserver.yaml ---\n", 1)[1].split("# --- end ---", 1)[0]
    loaded = yaml.safe_load(block)
    assert isinstance(loaded, dict)
    return loaded


def _docs_gate_block() -> dict[str, Any]:
    text = (ROOT / "docs" / "synapse.md").read_text(encoding="utf-8")
    section = text.split("## The synchronous gate", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    loaded = yaml.safe_load(block)
    assert isinstance(loaded, dict)
    return loaded


GATE_AND_RETENTION = {
    "encryption",
    "registration",
    "antispam",
    "callbacks",
    "unanswered",
    "fail_closed",
    "room_rules",
    "msc",
    "retention",
    "purge_jobs",
    "purge_interval",
    "retention_bounds",
    "retention_default",
}


@pytest.mark.parametrize("case", ["default", "production"])
def test_notes_homeserver_blocks_pass_check_homeserver(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = MINIMAL if case == "default" else production_values()
    rel = render(values)
    pod = start_pod(rel, tmp_path / "pod", existing=_existing_secrets(tmp_path))
    cfg = _load(pod, monkeypatch)
    hs = _homeserver_block(rel.notes)
    assert hs["app_service_config_files"] == ["/etc/santeguard/registration.yaml"]
    registration = tmp_path / "registration.yaml"
    registration.write_text(yaml.safe_dump({"id": cfg.appservice.id}), encoding="utf-8")
    hs["app_service_config_files"] = [str(registration)]
    findings = check_homeserver(hs, registration, base=tmp_path, network=network_from_config(cfg))
    states = {f.id: f.state for f in findings}
    assert GATE_AND_RETENTION <= set(states)
    assert {k: v for k, v in states.items() if k in GATE_AND_RETENTION and v is not State.OK} == {}
    # The blocks are docs/synapse.md's, with this release's URL and enforcement user.
    docs = _docs_gate_block()["modules"]
    modules = hs["modules"]
    assert [m["module"] for m in modules] == [m["module"] for m in docs]
    url = f"{cfg.appservice.address}{cfg.antispam.path}"
    for ours, theirs in zip(modules, docs, strict=True):
        assert set(ours["config"]) - {"retention_max_lifetime_ms"} <= set(theirs["config"])
        assert ours["config"]["base_url"] == url
        for key in ("enabled_callbacks", "fail_open"):
            assert ours["config"].get(key) == theirs["config"].get(key)
    room = modules[1]["config"]
    assert room["enforcer_user_id"] == f"@santeguard_control:{cfg.homeserver.domain}"
    lifetime = parse_duration(cfg.retention.default_max_lifetime)
    assert room["retention_max_lifetime_ms"] == lifetime
    assert hs["retention"]["default_policy"]["max_lifetime"] == duration_text(lifetime)
    assert hs["encryption_enabled_by_default_for_room_type"] == "all"
    # The notes name where the token is, never the token itself.
    assert all(value not in rel.notes for value in pod.env.values() if len(value) > 20)
    assert "/_synapse/admin/v1/users/@santeguard_control:" in rel.notes


def test_notes_retention_follows_the_values() -> None:
    rel = render(
        merged(
            MINIMAL,
            {
                "config": {
                    "retention": {
                        "default_max_lifetime": "6mois",
                        "min_lifetime": "2sem",
                        "max_lifetime": "2a",
                        "purge_interval": "12h",
                    }
                }
            },
        )
    )
    hs = _homeserver_block(rel.notes)
    assert hs["retention"] == {
        "enabled": True,
        "default_policy": {"max_lifetime": duration_text(parse_duration("6mois"))},
        "allowed_lifetime_min": "2w",
        "allowed_lifetime_max": "2y",
        "purge_jobs": [{"interval": "12h"}],
    }
    assert hs["modules"][1]["config"]["retention_max_lifetime_ms"] == 180 * 86_400_000
    off = _homeserver_block(
        render(merged(MINIMAL, {"config": {"retention": {"enabled": False}}})).notes
    )
    assert "retention" not in off
    assert "retention_max_lifetime_ms" not in off["modules"][1]["config"]


def _schema_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "values_schema", ROOT / "helm" / "values_schema.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_values_schema_follows_the_config_model() -> None:
    generator = _schema_generator()
    committed = (CHART / "values.schema.json").read_text(encoding="utf-8")
    assert committed == generator.render(), "run .venv/bin/python helm/values_schema.py"
    schema = json.loads(committed)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    sections = schema["properties"]["config"]["properties"]
    assert set(sections) == set(Config.model_fields)
    for name, section in sections.items():
        model = Config.model_fields[name].annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        assert section["additionalProperties"] is False, name
        managed = generator.MANAGED.get(name, set())
        assert set(section["properties"]) == set(model.model_fields) - managed, name


def test_every_key_kept_from_the_values_is_set_by_the_chart() -> None:
    """What the schema refuses in `config:` the chart provides: in config.yaml or as a
    SANTEGUARD_<SECTION>__<KEY> variable (optional ones included when an existingSecret
    may hold them)."""
    rel = render(production_values(), namespace="santeguard")
    config = yaml.safe_load(rel.config_yaml())
    env = {item["name"] for item in rel.container["env"]}
    unset = {("appservice", "registration"), ("database", "sqlite_synchronous")}
    missing = [
        f"{section}.{key}"
        for section, keys in _schema_generator().MANAGED.items()
        for key in sorted(keys)
        if (section, key) not in unset
        and key not in config.get(section, {})
        and f"SANTEGUARD_{section}__{key}".upper() not in env
    ]
    assert missing == []


def test_chart_values_are_valid_against_their_schema() -> None:
    """values.yaml itself, and the production file, pass the schema (lint checks it too)."""
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(MINIMAL)
        chart.validate_schema(production_values())
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(merged(MINIMAL, {"config": {"gate": {"admin_rooom": None}}}))


def test_notes_in_french_by_default_english_on_request() -> None:
    french = render(MINIMAL).notes
    english = render(merged(MINIMAL, {"notesLanguage": "en"})).notes
    assert "Montez l'enregistrement dans le pod de Synapse" in french
    assert "Mount the registration into Synapse's pod" in english
    assert "Mount the registration" not in french and "Montez" not in english
    assert _homeserver_block(french) == _homeserver_block(english)
