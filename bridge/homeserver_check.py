"""`santeguard check-homeserver`: is this Synapse configured the way SantéGuard needs?

Reads homeserver.yaml (the file is what decides; a running server cannot be asked) and
reports each requirement in one of three states, never claiming more than it checked:

- OK: checked, and right;
- failed ("À CORRIGER" / "TO FIX"), with what is wrong;
- not run ("NON VÉRIFIÉ" / "NOT CHECKED"): the check needs something it was not given
  (the registration file, ``-r``), so it says so instead of passing.

Exit status of the command (``exit_code``): 0 only when every check ran and passed; 1
when any check failed; 3 when none failed but some did not run. "Not run" is non-zero
because a script that gates a deployment on this command must not pass on a check that
did not happen; it has its own code so that the script can tell "incomplete" from
"wrong". (2 is for a homeserver.yaml that cannot be read.)

Takes the parsed YAML; the only file it looks at is the registration it is given.
Texts are ``hscheck.*`` keys of ``CATALOG``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from bridge.core.antispam import DECIDED_CALLBACKS, NOT_DECIDED
from bridge.core.ports import TextPort

REQUIRED_CALLBACKS = ("user_may_invite", "user_may_join_room", "check_event_for_spam")
# May fail open: logins never depend on the gate (it only triggers PSC verification).
FAIL_OPEN_ALLOWED = frozenset({"check_login_for_spam"})
# Callbacks worth enabling: decided by the gate, or refused by it on purpose.
ANSWERED_CALLBACKS = DECIDED_CALLBACKS | {
    name for name, answer in NOT_DECIDED.items() if answer.status == 403
}

CATALOG: Mapping[str, Mapping[str, str]] = {
    "fr": {
        "hscheck.encryption": "chiffrement par défaut de tous les salons "
        "(encryption_enabled_by_default_for_room_type: all)",
        "hscheck.registration": "enregistrement SantéGuard dans app_service_config_files",
        "hscheck.antispam": "module synapse_http_antispam.HTTPAntispam",
        "hscheck.callbacks": "enabled_callbacks listés explicitement et contenant {cbs}",
        "hscheck.unanswered": "aucun callback activé que la porte ne décide pas "
        "(Synapse refuserait toujours l'action)",
        "hscheck.fail_closed": "callbacks fermés en cas de panne (fail_open: false)",
        "hscheck.room_rules": (
            "module bridge.gate.synapse_module.SanteGuardRoomRules (création de salons)"
        ),
        "hscheck.msc": "experimental_features msc2409_to_device_messages_enabled et "
        "msc3202_transaction_extensions",
        "hscheck.ok": "OK",
        "hscheck.missing": "À CORRIGER",
        "hscheck.not_run": "NON VÉRIFIÉ",
        "hscheck.hint.no_appservices": "app_service_config_files est vide ou absent",
        "hscheck.hint.no_registration": "fichier d'enregistrement non fourni : "
        "relancez avec -r registration.yaml",
        "hscheck.hint.registration_missing": "{path} n'existe pas",
        "hscheck.hint.registration_not_listed": "{path} n'est pas dans app_service_config_files",
        "hscheck.hint.no_antispam": "le module synapse_http_antispam.HTTPAntispam est absent",
        "hscheck.hint.all_callbacks": "sans enabled_callbacks, le module les active tous",
        "hscheck.hint.unanswered": "activés : {callbacks}",
        "hscheck.hint.fail_open": "ouverts en cas de panne : {callbacks}",
    },
    "en": {
        "hscheck.encryption": "every room encrypted by default "
        "(encryption_enabled_by_default_for_room_type: all)",
        "hscheck.registration": "SantéGuard registration in app_service_config_files",
        "hscheck.antispam": "synapse_http_antispam.HTTPAntispam module",
        "hscheck.callbacks": "enabled_callbacks listed explicitly and containing {cbs}",
        "hscheck.unanswered": "no enabled callback that the gate does not decide "
        "(Synapse would always refuse the action)",
        "hscheck.fail_closed": "callbacks fail closed (fail_open: false)",
        "hscheck.room_rules": (
            "bridge.gate.synapse_module.SanteGuardRoomRules module (room creation)"
        ),
        "hscheck.msc": "experimental_features msc2409_to_device_messages_enabled and "
        "msc3202_transaction_extensions",
        "hscheck.ok": "OK",
        "hscheck.missing": "TO FIX",
        "hscheck.not_run": "NOT CHECKED",
        "hscheck.hint.no_appservices": "app_service_config_files is empty or missing",
        "hscheck.hint.no_registration": "no registration file given: "
        "run again with -r registration.yaml",
        "hscheck.hint.registration_missing": "{path} does not exist",
        "hscheck.hint.registration_not_listed": "{path} is not in app_service_config_files",
        "hscheck.hint.no_antispam": "the synapse_http_antispam.HTTPAntispam module is missing",
        "hscheck.hint.all_callbacks": "without enabled_callbacks the module enables them all",
        "hscheck.hint.unanswered": "enabled: {callbacks}",
        "hscheck.hint.fail_open": "failing open: {callbacks}",
    },
}


class Status(Enum):
    OK = "ok"
    FAILED = "missing"
    NOT_RUN = "not_run"


@dataclass(frozen=True)
class Check:
    key: str
    status: Status
    hint: str | None = None  # catalog key (hscheck.hint.*): what is wrong, or why not run
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK


def _passed(key: str, ok: bool, hint: str | None = None, **params: str) -> Check:
    if ok:
        return Check(key, Status.OK)
    return Check(key, Status.FAILED, hint, params)


def _module(config: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    modules = config.get("modules")
    for m in modules if isinstance(modules, list) else []:
        if isinstance(m, dict) and m.get("module") == name:
            cfg = m.get("config")
            return cfg if isinstance(cfg, dict) else {}
    return None


def _registration(config: Mapping[str, Any], registration: Path | None, base: Path | None) -> Check:
    listed = config.get("app_service_config_files")
    if not isinstance(listed, list) or not [p for p in listed if isinstance(p, str) and p]:
        return Check("registration", Status.FAILED, "hscheck.hint.no_appservices")
    if registration is None:
        return Check("registration", Status.NOT_RUN, "hscheck.hint.no_registration")
    if not registration.is_file():
        return _passed(
            "registration", False, "hscheck.hint.registration_missing", path=str(registration)
        )
    # Synapse resolves relative entries against its working directory, which this command
    # cannot know: the directory of homeserver.yaml and the current one are both accepted.
    wanted = registration.resolve()
    roots = [r for r in (base, Path.cwd()) if r is not None]
    found = any(
        (root / p).resolve() == wanted for p in listed if isinstance(p, str) and p for root in roots
    )
    return _passed(
        "registration", found, "hscheck.hint.registration_not_listed", path=str(registration)
    )


def check_homeserver(
    config: Mapping[str, Any], registration: Path | None, base: Path | None = None
) -> list[Check]:
    """Every check, in the order they are shown; ``base`` is homeserver.yaml's directory."""
    checks = [
        _passed("encryption", config.get("encryption_enabled_by_default_for_room_type") == "all"),
        _registration(config, registration, base),
    ]
    antispam = _module(config, "synapse_http_antispam.HTTPAntispam")
    checks.append(_passed("antispam", antispam is not None))
    callbacks = (antispam or {}).get("enabled_callbacks")
    listed = isinstance(callbacks, list)
    enabled: Sequence[Any] = callbacks if isinstance(callbacks, list) else []
    checks.append(
        _passed(
            "callbacks",
            listed
            and "accept_make_join" not in enabled
            and all(c in enabled for c in REQUIRED_CALLBACKS),
        )
    )
    if antispam is None:
        checks.append(Check("unanswered", Status.NOT_RUN, "hscheck.hint.no_antispam"))
    elif not listed:
        checks.append(Check("unanswered", Status.FAILED, "hscheck.hint.all_callbacks"))
    else:
        unanswered = sorted({str(c) for c in enabled} - ANSWERED_CALLBACKS)
        checks.append(
            _passed(
                "unanswered",
                not unanswered,
                "hscheck.hint.unanswered",
                callbacks=", ".join(unanswered),
            )
        )
    fail_open = (antispam or {}).get("fail_open", {})
    if antispam is None or not isinstance(fail_open, dict):
        checks.append(_passed("fail_closed", False))
    else:
        # check_event_for_spam fails open unless told otherwise (synapse-http-antispam).
        defaults = {"check_event_for_spam": True}
        names = {str(c) for c in enabled} | set(REQUIRED_CALLBACKS)
        opened = sorted(
            c for c in names - FAIL_OPEN_ALLOWED if fail_open.get(c, defaults.get(c, False))
        )
        checks.append(
            _passed(
                "fail_closed", not opened, "hscheck.hint.fail_open", callbacks=", ".join(opened)
            )
        )
    checks.append(
        _passed(
            "room_rules",
            _module(config, "bridge.gate.synapse_module.SanteGuardRoomRules") is not None,
        )
    )
    exp = config.get("experimental_features")
    exp = exp if isinstance(exp, dict) else {}
    checks.append(
        _passed(
            "msc",
            bool(exp.get("msc2409_to_device_messages_enabled"))
            and bool(exp.get("msc3202_transaction_extensions")),
        )
    )
    return checks


def exit_code(checks: Sequence[Check]) -> int:
    """0: all ran and passed; 1: something failed; 3: nothing failed, something not run."""
    if any(c.status is Status.FAILED for c in checks):
        return 1
    if any(c.status is Status.NOT_RUN for c in checks):
        return 3
    return 0


_STATUS_KEYS = {
    Status.OK: "hscheck.ok",
    Status.FAILED: "hscheck.missing",
    Status.NOT_RUN: "hscheck.not_run",
}


def render(checks: Sequence[Check], lang: str, text: TextPort) -> str:
    lines = []
    for c in checks:
        label = text.t(f"hscheck.{c.key}", lang, cbs=", ".join(REQUIRED_CALLBACKS))
        line = f"[{text.t(_STATUS_KEYS[c.status], lang)}] {label}"
        if c.hint is not None and not c.ok:
            line += f" — {text.t(c.hint, lang, **c.params)}"
        lines.append(line)
    return "\n".join(lines)
