"""`santeguard check-homeserver` cannot lie: a check that did not run is "not checked", never OK.

The gate's checks (registration, antispam module, callbacks, room rules, MSC features)
over homeserver.yaml variants, the rendering of the three states in French and English,
and the command's exit status. The other checks: tests/homeserver_check/.
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
from bridge.homeserver_check import Finding, Network, check_homeserver, exit_code, render
from bridge.homeserver_check import State as Status
from tests.homeserver_check.configs import ENFORCER_OK, NETWORK
from tests.homeserver_check.configs import good as full_good

EXE = Path(sys.executable).parent / "santeguard"
ANTISPAM = "synapse_http_antispam.HTTPAntispam"


def checks_of(
    hs: dict[str, Any], registration: Path | None, base: Path | None = None
) -> list[Finding]:
    """Against the test network, the live check passed: only the gate's checks vary."""
    network: Network = NETWORK
    return check_homeserver(hs, registration, base, network=network, enforcer=ENFORCER_OK)


def good(registration: Path) -> dict[str, Any]:
    return full_good(registration)


def _antispam(hs: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = hs["modules"][0]["config"]
    return config


def _enable(*names: str) -> Callable[[dict[str, Any]], None]:
    return lambda hs: _antispam(hs)["enabled_callbacks"].extend(names)


Mutation = Callable[[dict[str, Any]], object]

# (mutation, key, state, hint) — every other check stays OK.
CASES: dict[str, tuple[Mutation, str, Status, str | None]] = {
    "no app_service_config_files": (
        lambda hs: hs.pop("app_service_config_files"),
        "registration",
        Status.FIX,
        "hscheck.hint.no_appservices",
    ),
    "empty app_service_config_files": (
        lambda hs: hs.update(app_service_config_files=[]),
        "registration",
        Status.FIX,
        "hscheck.hint.no_appservices",
    ),
    "app_service_config_files not a list": (
        lambda hs: hs.update(app_service_config_files="registration.yaml"),
        "registration",
        Status.FIX,
        "hscheck.hint.no_appservices",
    ),
    "registration not listed": (
        lambda hs: hs.update(app_service_config_files=["/etc/other/registration.yaml"]),
        "registration",
        Status.FIX,
        "hscheck.hint.registration_not_listed",
    ),
    "publish_room enabled": (
        _enable("user_may_publish_room"),
        "unanswered",
        Status.FIX,
        "hscheck.hint.unanswered",
    ),
    "a typo enabled": (
        _enable("user_may_invit"),
        "unanswered",
        Status.FIX,
        "hscheck.hint.unanswered",
    ),
    "fail_open not a mapping": (
        lambda hs: _antispam(hs).update(fail_open=["check_event_for_spam"]),
        "fail_closed",
        Status.FIX,
        None,
    ),
    "check_event_for_spam open by the module's default": (
        lambda hs: _antispam(hs)["fail_open"].pop("check_event_for_spam"),
        "fail_closed",
        Status.FIX,
        "hscheck.hint.fail_open",
    ),
    "an extra callback failing open": (
        lambda hs: (
            _enable("user_may_create_room")(hs),
            _antispam(hs)["fail_open"].update(user_may_create_room=True),
        ),
        "fail_closed",
        Status.FIX,
        "hscheck.hint.fail_open",
    ),
    "encryption not by default": (
        lambda hs: hs.update(encryption_enabled_by_default_for_room_type="invite"),
        "encryption",
        Status.FIX,
        "hscheck.hint.encryption",
    ),
    "experimental_features not a mapping": (
        lambda hs: hs.update(experimental_features=["msc2409"]),
        "msc",
        Status.FIX,
        None,
    ),
    "no room module": (lambda hs: hs["modules"].pop(1), "room_rules", Status.FIX, None),
}


@pytest.fixture
def registration(tmp_path: Path) -> Path:
    path = tmp_path / "registration.yaml"
    path.write_text("id: santeguard\n")
    return path


def states(checks: list[Finding]) -> dict[str, Status]:
    return {c.id: c.state for c in checks}


def test_a_good_homeserver_passes_every_check(registration: Path) -> None:
    checks = checks_of(good(registration), registration)
    assert set(states(checks).values()) == {Status.OK}
    assert exit_code(checks) == 0


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_problem_fails_its_check_only(registration: Path, case: str) -> None:
    mutate, key, state, hint = CASES[case]
    hs = good(registration)
    mutate(hs)
    checks = checks_of(hs, registration)
    got = {c.key: c for c in checks}
    assert got[key].state is state
    assert got[key].problem == hint
    others = {k: c.state for k, c in got.items() if k != key}
    assert set(others.values()) == {Status.OK}, others
    # The unanswered callbacks and the MSC features are warnings; the rest is critical.
    assert exit_code(checks) == (4 if key in ("unanswered", "msc") else 1)


def test_registration_not_given_is_not_run_never_ok(registration: Path) -> None:
    checks = checks_of(good(registration), None)
    got = {c.key: c for c in checks}
    assert got["registration"].state is Status.NOT_CHECKED
    assert not got["registration"].ok
    assert got["registration"].problem == "hscheck.hint.no_registration"
    assert exit_code(checks) == 3


@pytest.mark.parametrize("files", [None, [], [""]])
def test_no_appservice_at_all_fails_even_without_registration(
    registration: Path, files: list[str] | None
) -> None:
    hs = good(registration)
    hs["app_service_config_files"] = files
    checks = checks_of(hs, None)
    assert states(checks)["registration"] is Status.FIX
    assert exit_code(checks) == 1


def test_registration_file_that_does_not_exist(tmp_path: Path, registration: Path) -> None:
    missing = tmp_path / "nope.yaml"
    hs = good(missing)
    got = {c.key: c for c in checks_of(hs, missing)}
    assert got["registration"].state is Status.FIX
    assert got["registration"].problem == "hscheck.hint.registration_missing"


def test_relative_entries_resolve_against_the_homeserver_directory(registration: Path) -> None:
    hs = good(registration)
    hs["app_service_config_files"] = ["registration.yaml"]
    assert (
        states(checks_of(hs, registration, base=registration.parent))["registration"] is Status.OK
    )
    other = registration.parent / "elsewhere"
    other.mkdir()
    assert states(checks_of(hs, registration, base=other))["registration"] is (Status.FIX)


def test_a_refused_3pid_callback_may_be_enabled(registration: Path) -> None:
    hs = good(registration)
    _enable("user_may_send_3pid_invite", "federated_user_may_invite")(hs)
    assert set(states(checks_of(hs, registration)).values()) == {Status.OK}


def test_without_the_antispam_module_its_dependent_check_is_not_run(registration: Path) -> None:
    hs = good(registration)
    hs["modules"].pop(0)
    got = states(checks_of(hs, registration))
    assert got["antispam"] is Status.FIX
    assert got["callbacks"] is Status.FIX
    assert got["fail_closed"] is Status.FIX
    assert got["unanswered"] is Status.NOT_CHECKED


def test_every_callback_enabled_when_none_listed(registration: Path) -> None:
    hs = good(registration)
    del _antispam(hs)["enabled_callbacks"]
    got = {c.key: c for c in checks_of(hs, registration)}
    assert got["callbacks"].state is Status.FIX
    assert got["unanswered"].state is Status.FIX
    assert got["unanswered"].problem == "hscheck.hint.all_callbacks"


def test_malformed_sections_do_not_crash(registration: Path) -> None:
    hs: dict[str, Any] = {
        "modules": {"module": ANTISPAM},
        "experimental_features": "yes",
        "app_service_config_files": [3, None],
    }
    got = states(checks_of(hs, registration))
    assert got["antispam"] is Status.FIX
    assert got["registration"] is Status.FIX
    gate = ("encryption", "registration", "antispam", "callbacks", "fail_closed", "room_rules")
    assert Status.OK not in {got[k] for k in (*gate, "msc", "unanswered")}


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        (
            "fr",
            [
                "critique   [NON VÉRIFIÉ] enregistrement SantéGuard dans "
                "app_service_config_files — "
                "fichier d'enregistrement non fourni : relancez avec -r registration.yaml",
                "attention  [À CORRIGER] aucun callback activé que la porte ne décide pas "
                "(Synapse refuserait toujours l'action) — activés : user_may_publish_room",
                "    → retirez de enabled_callbacks : user_may_publish_room",
                "critique   [OK] module synapse_http_antispam.HTTPAntispam",
            ],
        ),
        (
            "en",
            [
                "critical  [NOT CHECKED] SantéGuard registration in app_service_config_files — "
                "no registration file given: run again with -r registration.yaml",
                "warning   [TO FIX] no enabled callback that the gate does not decide "
                "(Synapse would always refuse the action) — enabled: user_may_publish_room",
                "    → remove from enabled_callbacks: user_may_publish_room",
                "critical  [OK] synapse_http_antispam.HTTPAntispam module",
            ],
        ),
    ],
)
def test_render_three_states(registration: Path, lang: str, expected: list[str]) -> None:
    hs = good(registration)
    _enable("user_may_publish_room")(hs)
    text = render(checks_of(hs, None), lang, build_translator(strict=True))
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
    # Without -c (SantéGuard's config) the comparisons and the live check do not run;
    # exit 0 with everything checked: tests/homeserver_check/test_live.py.
    not_run = _run(hs, path, "-r", str(registration), "--lang", "en")
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
