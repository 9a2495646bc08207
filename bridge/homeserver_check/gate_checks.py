"""The checks SantéGuard's gate depends on: encryption by default, the appservice
registration, the antispam and room-rules modules, the MSC2409/MSC3202 features."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bridge.core.antispam import DECIDED_CALLBACKS, NOT_DECIDED
from bridge.homeserver_check.model import (
    Finding,
    Network,
    Severity,
    State,
    not_checked,
    ok,
    to_fix,
    yaml_block,
)

ANTISPAM = "synapse_http_antispam.HTTPAntispam"
ROOM_RULES = "bridge.gate.synapse_module.SanteGuardRoomRules"
REQUIRED_CALLBACKS = ("user_may_invite", "user_may_join_room", "check_event_for_spam")
# May fail open: logins never depend on the gate (it only triggers PSC verification).
FAIL_OPEN_ALLOWED = frozenset({"check_login_for_spam"})
# Callbacks worth enabling: decided by the gate, or refused by it on purpose.
ANSWERED_CALLBACKS = DECIDED_CALLBACKS | {
    name for name, answer in NOT_DECIDED.items() if answer.status == 403
}
RECOMMENDED_CALLBACKS = (*REQUIRED_CALLBACKS, "check_login_for_spam")
CRIT, WARN = Severity.CRITICAL, Severity.WARNING


def module(config: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    modules = config.get("modules")
    for m in modules if isinstance(modules, list) else []:
        if isinstance(m, dict) and m.get("module") == name:
            cfg = m.get("config")
            return cfg if isinstance(cfg, dict) else {}
    return None


def _fail_open_block() -> dict[str, bool]:
    return {c: c in FAIL_OPEN_ALLOWED for c in RECOMMENDED_CALLBACKS}


def _antispam_yaml(network: Network | None) -> str:
    url = network.antispam_url if network else "http://127.0.0.1:29340/_santeguard/antispam"
    return yaml_block(
        {
            "modules": [
                {
                    "module": ANTISPAM,
                    "config": {
                        "base_url": url,
                        "authorization": "<antispam.token>",
                        "enabled_callbacks": list(RECOMMENDED_CALLBACKS),
                        "fail_open": _fail_open_block(),
                    },
                }
            ]
        }
    )


def encryption(config: Mapping[str, Any]) -> Finding:
    if config.get("encryption_enabled_by_default_for_room_type") == "all":
        return ok("encryption")
    return to_fix(
        "encryption",
        CRIT,
        "hscheck.hint.encryption",
        params={"value": str(config.get("encryption_enabled_by_default_for_room_type", "off"))},
        fix_yaml=yaml_block({"encryption_enabled_by_default_for_room_type": "all"}),
    )


def registration(config: Mapping[str, Any], path: Path | None, base: Path | None) -> Finding:
    listed = config.get("app_service_config_files")
    shown = str(path) if path is not None else "/etc/santeguard/registration.yaml"
    fix_yaml = yaml_block({"app_service_config_files": [shown]})
    if not isinstance(listed, list) or not [p for p in listed if isinstance(p, str) and p]:
        return to_fix("registration", CRIT, "hscheck.hint.no_appservices", fix_yaml=fix_yaml)
    if path is None:
        return not_checked("registration", CRIT, "hscheck.hint.no_registration")
    if not path.is_file():
        return to_fix(
            "registration",
            CRIT,
            "hscheck.hint.registration_missing",
            params={"path": str(path)},
            fix="hscheck.fix.generate_registration",
        )
    # Synapse resolves relative entries against its working directory, which this command
    # cannot know: the directory of homeserver.yaml and the current one are both accepted.
    wanted = path.resolve()
    roots = [r for r in (base, Path.cwd()) if r is not None]
    if any(
        (root / p).resolve() == wanted for p in listed if isinstance(p, str) and p for root in roots
    ):
        return ok("registration")
    return to_fix(
        "registration",
        CRIT,
        "hscheck.hint.registration_not_listed",
        params={"path": str(path)},
        fix_yaml=fix_yaml,
    )


def antispam_checks(config: Mapping[str, Any], network: Network | None) -> list[Finding]:
    """antispam, callbacks, unanswered, fail_closed."""
    antispam = module(config, ANTISPAM)
    out = [
        ok("antispam")
        if antispam is not None
        else to_fix("antispam", CRIT, "hscheck.hint.no_antispam", fix_yaml=_antispam_yaml(network))
    ]
    callbacks = (antispam or {}).get("enabled_callbacks")
    listed = isinstance(callbacks, list)
    enabled: Sequence[Any] = callbacks if isinstance(callbacks, list) else []
    callbacks_yaml = yaml_block({"enabled_callbacks": list(RECOMMENDED_CALLBACKS)})
    if (
        listed
        and "accept_make_join" not in enabled
        and all(c in enabled for c in REQUIRED_CALLBACKS)
    ):
        out.append(ok("callbacks"))
    else:
        out.append(
            to_fix(
                "callbacks",
                CRIT,
                None,
                fix="hscheck.fix.in_antispam_config",
                fix_yaml=callbacks_yaml,
            )
        )
    if antispam is None:
        out.append(not_checked("unanswered", WARN, "hscheck.hint.no_antispam"))
    elif not listed:
        out.append(
            to_fix(
                "unanswered",
                WARN,
                "hscheck.hint.all_callbacks",
                fix="hscheck.fix.in_antispam_config",
                fix_yaml=callbacks_yaml,
            )
        )
    else:
        unanswered = sorted({str(c) for c in enabled} - ANSWERED_CALLBACKS)
        out.append(
            ok("unanswered", WARN)
            if not unanswered
            else to_fix(
                "unanswered",
                WARN,
                "hscheck.hint.unanswered",
                params={"callbacks": ", ".join(unanswered)},
                fix="hscheck.fix.remove_callbacks",
                fix_params={"callbacks": ", ".join(unanswered)},
            )
        )
    out.append(_fail_closed(antispam, enabled))
    return out


def _fail_closed(antispam: dict[str, Any] | None, enabled: Sequence[Any]) -> Finding:
    fail_open = (antispam or {}).get("fail_open", {})
    names = {str(c) for c in enabled} | set(REQUIRED_CALLBACKS)
    closed = {c: c in FAIL_OPEN_ALLOWED for c in sorted(names)}
    fix_yaml = yaml_block({"fail_open": closed})
    if antispam is None or not isinstance(fail_open, dict):
        return to_fix(
            "fail_closed", CRIT, None, fix="hscheck.fix.in_antispam_config", fix_yaml=fix_yaml
        )
    # check_event_for_spam fails open unless told otherwise (synapse-http-antispam).
    defaults = {"check_event_for_spam": True}
    opened = sorted(
        c for c in names - FAIL_OPEN_ALLOWED if fail_open.get(c, defaults.get(c, False))
    )
    if not opened:
        return ok("fail_closed")
    return to_fix(
        "fail_closed",
        CRIT,
        "hscheck.hint.fail_open",
        params={"callbacks": ", ".join(opened)},
        fix="hscheck.fix.in_antispam_config",
        fix_yaml=fix_yaml,
    )


def room_rules(config: Mapping[str, Any], network: Network | None) -> Finding:
    if module(config, ROOM_RULES) is not None:
        return ok("room_rules")
    url = network.antispam_url if network else "http://127.0.0.1:29340/_santeguard/antispam"
    enforcer = network.enforcer if network else "@santeguard_control:example.org"
    return to_fix(
        "room_rules",
        CRIT,
        None,
        fix_yaml=yaml_block(
            {
                "modules": [
                    {
                        "module": ROOM_RULES,
                        "config": {
                            "base_url": url,
                            "authorization": "<antispam.token>",
                            "enforcer_user_id": enforcer,
                        },
                    }
                ]
            }
        ),
    )


def msc(config: Mapping[str, Any]) -> Finding:
    exp = config.get("experimental_features")
    exp = exp if isinstance(exp, dict) else {}
    if exp.get("msc2409_to_device_messages_enabled") and exp.get("msc3202_transaction_extensions"):
        return ok("msc", WARN)
    return to_fix(
        "msc",
        WARN,
        None,
        fix_yaml=yaml_block(
            {
                "experimental_features": {
                    "msc2409_to_device_messages_enabled": True,
                    "msc3202_transaction_extensions": True,
                }
            }
        ),
    )


def gate_checks(
    config: Mapping[str, Any],
    registration_path: Path | None,
    base: Path | None,
    network: Network | None,
) -> list[Finding]:
    return [
        encryption(config),
        registration(config, registration_path, base),
        *antispam_checks(config, network),
        room_rules(config, network),
        msc(config),
    ]


__all__ = ["ANSWERED_CALLBACKS", "REQUIRED_CALLBACKS", "State", "gate_checks", "module"]
