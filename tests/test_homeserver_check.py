"""`santeguard check-homeserver` cannot lie: a check that did not run is "not run", never OK.

A table of homeserver.yaml variants against the state of each check, the rendering of the
three states in French and English, and the command's exit status.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.app.wiring import build_translator
from bridge.homeserver_check import Check, Status, check_homeserver, exit_code, render

EXE = Path(sys.executable).parent / "santeguard"
ANTISPAM = "synapse_http_antispam.HTTPAntispam"


def good(registration: Path) -> dict[str, Any]:
    return {
        "encryption_enabled_by_default_for_room_type": "all",
        "app_service_config_files": [str(registration)],
        "modules": [
            {
                "module": ANTISPAM,
                "config": {
                    "enabled_callbacks": [
                        "user_may_invite",
                        "user_may_join_room",
                        "check_event_for_spam",
                        "check_login_for_spam",
                    ],
                    "fail_open": {
                        "user_may_invite": False,
                        "user_may_join_room": False,
                        "check_event_for_spam": False,
                        "check_login_for_spam": True,
                    },
                },
            },
            {"module": "bridge.gate.synapse_module.SanteGuardRoomRules", "config": {}},
        ],
        "experimental_features": {
            "msc2409_to_device_messages_enabled": True,
            "msc3202_transaction_extensions": True,
        },
    }


def _antispam(hs: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = hs["modules"][0]["config"]
    return config


def _enable(*names: str) -> Callable[[dict[str, Any]], None]:
    return lambda hs: _antispam(hs)["enabled_callbacks"].extend(names)


Mutation = Callable[[dict[str, Any]], None]

# (mutation, key, state, hint) — every other check stays OK.
CASES: dict[str, tuple[Mutation, str, Status, str | None]] = {
    "no app_service_config_files": (
        lambda hs: hs.pop("app_service_config_files"),
        "registration",
        Status.FAILED,
        "hscheck.hint.no_appservices",
    ),
    "empty app_service_config_files": (
        lambda hs: hs.update(app_service_config_files=[]),
        "registration",
        Status.FAILED,
        "hscheck.hint.no_appservices",
    ),
    "app_service_config_files not a list": (
        lambda hs: hs.update(app_service_config_files="registration.yaml"),
        "registration",
        Status.FAILED,
        "hscheck.hint.no_appservices",
    ),
    "registration not listed": (
        lambda hs: hs.update(app_service_config_files=["/etc/other/registration.yaml"]),
        "registration",
        Status.FAILED,
        "hscheck.hint.registration_not_listed",
    ),
    "publish_room enabled": (
        _enable("user_may_publish_room"),
        "unanswered",
        Status.FAILED,
        "hscheck.hint.unanswered",
    ),
    "a typo enabled": (
        _enable("user_may_invit"),
        "unanswered",
        Status.FAILED,
        "hscheck.hint.unanswered",
    ),
    "fail_open not a mapping": (
        lambda hs: _antispam(hs).update(fail_open=["check_event_for_spam"]),
        "fail_closed",
        Status.FAILED,
        None,
    ),
    "check_event_for_spam open by the module's default": (
        lambda hs: _antispam(hs)["fail_open"].pop("check_event_for_spam"),
        "fail_closed",
        Status.FAILED,
        "hscheck.hint.fail_open",
    ),
    "an extra callback failing open": (
        lambda hs: (
            _enable("user_may_create_room")(hs),
            _antispam(hs)["fail_open"].update(user_may_create_room=True),
        ),
        "fail_closed",
        Status.FAILED,
        "hscheck.hint.fail_open",
    ),
    "encryption not by default": (
        lambda hs: hs.update(encryption_enabled_by_default_for_room_type="invite"),
        "encryption",
        Status.FAILED,
        None,
    ),
    "experimental_features not a mapping": (
        lambda hs: hs.update(experimental_features=["msc2409"]),
        "msc",
        Status.FAILED,
        None,
    ),
    "no room module": (lambda hs: hs["modules"].pop(1), "room_rules", Status.FAILED, None),
}


@pytest.fixture
def registration(tmp_path: Path) -> Path:
    path = tmp_path / "registration.yaml"
    path.write_text("id: santeguard\n")
    return path


def states(checks: list[Check]) -> dict[str, Status]:
    return {c.key: c.status for c in checks}


def test_a_good_homeserver_passes_every_check(registration: Path) -> None:
    checks = check_homeserver(good(registration), registration)
    assert set(states(checks).values()) == {Status.OK}
    assert exit_code(checks) == 0


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_problem_fails_its_check_only(registration: Path, case: str) -> None:
    mutate, key, state, hint = CASES[case]
    hs = good(registration)
    mutate(hs)
    checks = check_homeserver(hs, registration)
    got = {c.key: c for c in checks}
    assert got[key].status is state
    assert got[key].hint == hint
    others = {k: c.status for k, c in got.items() if k != key}
    assert set(others.values()) == {Status.OK}, others
    assert exit_code(checks) == 1


def test_registration_not_given_is_not_run_never_ok(registration: Path) -> None:
    checks = check_homeserver(good(registration), None)
    got = {c.key: c for c in checks}
    assert got["registration"].status is Status.NOT_RUN
    assert not got["registration"].ok
    assert got["registration"].hint == "hscheck.hint.no_registration"
    assert exit_code(checks) == 3


@pytest.mark.parametrize("files", [None, [], [""]])
def test_no_appservice_at_all_fails_even_without_registration(
    registration: Path, files: list[str] | None
) -> None:
    hs = good(registration)
    hs["app_service_config_files"] = files
    checks = check_homeserver(hs, None)
    assert states(checks)["registration"] is Status.FAILED
    assert exit_code(checks) == 1


def test_registration_file_that_does_not_exist(tmp_path: Path, registration: Path) -> None:
    missing = tmp_path / "nope.yaml"
    hs = good(missing)
    got = {c.key: c for c in check_homeserver(hs, missing)}
    assert got["registration"].status is Status.FAILED
    assert got["registration"].hint == "hscheck.hint.registration_missing"


def test_relative_entries_resolve_against_the_homeserver_directory(registration: Path) -> None:
    hs = good(registration)
    hs["app_service_config_files"] = ["registration.yaml"]
    assert (
        states(check_homeserver(hs, registration, base=registration.parent))["registration"]
        is Status.OK
    )
    other = registration.parent / "elsewhere"
    other.mkdir()
    assert states(check_homeserver(hs, registration, base=other))["registration"] is (Status.FAILED)


def test_a_refused_3pid_callback_may_be_enabled(registration: Path) -> None:
    hs = good(registration)
    _enable("user_may_send_3pid_invite", "federated_user_may_invite")(hs)
    assert set(states(check_homeserver(hs, registration)).values()) == {Status.OK}


def test_without_the_antispam_module_its_dependent_check_is_not_run(registration: Path) -> None:
    hs = good(registration)
    hs["modules"].pop(0)
    got = states(check_homeserver(hs, registration))
    assert got["antispam"] is Status.FAILED
    assert got["callbacks"] is Status.FAILED
    assert got["fail_closed"] is Status.FAILED
    assert got["unanswered"] is Status.NOT_RUN


def test_every_callback_enabled_when_none_listed(registration: Path) -> None:
    hs = good(registration)
    del _antispam(hs)["enabled_callbacks"]
    got = {c.key: c for c in check_homeserver(hs, registration)}
    assert got["callbacks"].status is Status.FAILED
    assert got["unanswered"].status is Status.FAILED
    assert got["unanswered"].hint == "hscheck.hint.all_callbacks"


def test_malformed_sections_do_not_crash(registration: Path) -> None:
    hs: dict[str, Any] = {
        "modules": {"module": ANTISPAM},
        "experimental_features": "yes",
        "app_service_config_files": [3, None],
    }
    got = states(check_homeserver(hs, registration))
    assert got["antispam"] is Status.FAILED
    assert got["registration"] is Status.FAILED
    assert Status.OK not in got.values()


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        (
            "fr",
            [
                "[NON VÉRIFIÉ] enregistrement SantéGuard dans app_service_config_files — "
                "fichier d'enregistrement non fourni : relancez avec -r registration.yaml",
                "[À CORRIGER] aucun callback activé que la porte ne décide pas "
                "(Synapse refuserait toujours l'action) — activés : user_may_publish_room",
                "[OK] module synapse_http_antispam.HTTPAntispam",
            ],
        ),
        (
            "en",
            [
                "[NOT CHECKED] SantéGuard registration in app_service_config_files — "
                "no registration file given: run again with -r registration.yaml",
                "[TO FIX] no enabled callback that the gate does not decide "
                "(Synapse would always refuse the action) — enabled: user_may_publish_room",
                "[OK] synapse_http_antispam.HTTPAntispam module",
            ],
        ),
    ],
)
def test_render_three_states(registration: Path, lang: str, expected: list[str]) -> None:
    hs = good(registration)
    _enable("user_may_publish_room")(hs)
    text = render(check_homeserver(hs, None), lang, build_translator(strict=True))
    for line in expected:
        assert line in text.splitlines()


# -- the command -------------------------------------------------------------------------


def _run(hs: Any, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    path.write_text(yaml.safe_dump(hs))
    return subprocess.run(
        [str(EXE), "check-homeserver", "--homeserver-config", str(path), *extra],
        capture_output=True,
        text=True,
    )


def test_exit_status(tmp_path: Path, registration: Path) -> None:
    path = tmp_path / "homeserver.yaml"
    hs = good(registration)
    assert _run(hs, path, "-r", str(registration)).returncode == 0
    not_run = _run(hs, path, "--lang", "en")
    assert not_run.returncode == 3
    assert "[NOT CHECKED]" in not_run.stdout and "[TO FIX]" not in not_run.stdout
    empty = copy.deepcopy(hs)
    empty["app_service_config_files"] = []
    failed = _run(empty, path, "--lang", "en")
    assert failed.returncode == 1
    assert (
        "[TO FIX] SantéGuard registration in app_service_config_files — "
        "app_service_config_files is empty or missing"
    ) in failed.stdout
    assert _run(["not", "a", "mapping"], path).returncode == 2
    path.write_bytes(b"\xff\xfe not utf-8")
    unreadable = subprocess.run(
        [str(EXE), "check-homeserver", "--homeserver-config", str(path)],
        capture_output=True,
        text=True,
    )
    assert unreadable.returncode == 2 and "cannot read" in unreadable.stderr
