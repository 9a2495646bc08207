"""`santeguard check-homeserver`: is this Synapse configured the way SantéGuard needs?

Reads homeserver.yaml (the file is what decides; a running server cannot be asked) and
reports each requirement as OK or with what to change. Pure: takes the parsed YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.core.ports import TextPort

REQUIRED_CALLBACKS = ("user_may_invite", "user_may_join_room", "check_event_for_spam")

CATALOG: Mapping[str, Mapping[str, str]] = {
    "fr": {
        "hscheck.encryption": "chiffrement par défaut de tous les salons "
        "(encryption_enabled_by_default_for_room_type: all)",
        "hscheck.registration": "enregistrement SantéGuard dans app_service_config_files",
        "hscheck.antispam": "module synapse_http_antispam.HTTPAntispam",
        "hscheck.callbacks": "enabled_callbacks listés explicitement et contenant {cbs}",
        "hscheck.fail_closed": "callbacks fermés en cas de panne (fail_open: false)",
        "hscheck.room_rules": (
            "module bridge.gate.synapse_module.SanteGuardRoomRules (création de salons)"
        ),
        "hscheck.msc": "experimental_features msc2409_to_device_messages_enabled et "
        "msc3202_transaction_extensions",
        "hscheck.ok": "OK",
        "hscheck.missing": "À CORRIGER",
    },
    "en": {
        "hscheck.encryption": "every room encrypted by default "
        "(encryption_enabled_by_default_for_room_type: all)",
        "hscheck.registration": "SantéGuard registration in app_service_config_files",
        "hscheck.antispam": "synapse_http_antispam.HTTPAntispam module",
        "hscheck.callbacks": "enabled_callbacks listed explicitly and containing {cbs}",
        "hscheck.fail_closed": "callbacks fail closed (fail_open: false)",
        "hscheck.room_rules": (
            "bridge.gate.synapse_module.SanteGuardRoomRules module (room creation)"
        ),
        "hscheck.msc": "experimental_features msc2409_to_device_messages_enabled and "
        "msc3202_transaction_extensions",
        "hscheck.ok": "OK",
        "hscheck.missing": "TO FIX",
    },
}


@dataclass(frozen=True)
class Check:
    key: str
    ok: bool


def _module(config: dict[str, Any], name: str) -> dict[str, Any] | None:
    for m in config.get("modules") or []:
        if isinstance(m, dict) and m.get("module") == name:
            cfg = m.get("config")
            return cfg if isinstance(cfg, dict) else {}
    return None


def check_homeserver(config: dict[str, Any], registration: Path | None) -> list[Check]:
    checks = [
        Check("encryption", config.get("encryption_enabled_by_default_for_room_type") == "all")
    ]
    files = [str(Path(p).resolve()) for p in config.get("app_service_config_files") or []]
    checks.append(
        Check("registration", registration is None or str(registration.resolve()) in files)
    )
    antispam = _module(config, "synapse_http_antispam.HTTPAntispam")
    checks.append(Check("antispam", antispam is not None))
    callbacks = (antispam or {}).get("enabled_callbacks")
    checks.append(
        Check(
            "callbacks",
            isinstance(callbacks, list)
            and "accept_make_join" not in callbacks
            and all(c in callbacks for c in REQUIRED_CALLBACKS),
        )
    )
    fail_open = (antispam or {}).get("fail_open") or {}
    checks.append(
        Check(
            "fail_closed",
            antispam is not None
            and fail_open.get("check_event_for_spam") is False
            and not any(fail_open.get(c) for c in REQUIRED_CALLBACKS),
        )
    )
    checks.append(
        Check(
            "room_rules",
            _module(config, "bridge.gate.synapse_module.SanteGuardRoomRules") is not None,
        )
    )
    exp = config.get("experimental_features") or {}
    checks.append(
        Check(
            "msc",
            bool(exp.get("msc2409_to_device_messages_enabled"))
            and bool(exp.get("msc3202_transaction_extensions")),
        )
    )
    return checks


def render(checks: list[Check], lang: str, text: TextPort) -> str:
    lines = []
    for c in checks:
        label = text.t(f"hscheck.{c.key}", lang, cbs=", ".join(REQUIRED_CALLBACKS))
        lines.append(f"[{text.t('hscheck.ok' if c.ok else 'hscheck.missing', lang)}] {label}")
    return "\n".join(lines)
