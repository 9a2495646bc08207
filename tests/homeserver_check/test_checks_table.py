"""Every check over good and bad homeserver.yaml variants: each variant changes exactly
the findings it names (state, severity, what is wrong); every other finding stays OK."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.homeserver_check import Severity, State, check_homeserver, exit_code
from tests.homeserver_check.configs import (
    NETWORK,
    PARTNER,
    Mutation,
    findings,
    good,
    passwords,
    retention,
)

CRIT, WARN = Severity.CRITICAL, Severity.WARNING
FIX, NOT_CHECKED = State.FIX, State.NOT_CHECKED
Expected = dict[str, tuple[State, Severity, str | None]]


def _set(**values: Any) -> Mutation:
    return lambda hs: hs.update(values)


def _retention(**values: Any) -> Mutation:
    return lambda hs: retention(hs).update(values)


def _drop_retention(*keys: str) -> Mutation:
    return lambda hs: [retention(hs).pop(k) for k in keys]


def _listeners(*names: str) -> Mutation:
    return lambda hs: hs.update(
        listeners=[{"port": 8008, "type": "http", "resources": [{"names": list(names)}]}]
    )


def _both(*mutations: Mutation) -> Mutation:
    return lambda hs: [m(hs) for m in mutations]


GAP = "hscheck.hint.purge_jobs_gap"
CASES: dict[str, tuple[Mutation, Expected]] = {
    # -- retention ------------------------------------------------------------------
    "retention disabled": (
        _retention(enabled=False),
        {"retention": (FIX, CRIT, "hscheck.hint.retention_disabled")},
    ),
    "retention a string, not a boolean": (
        _retention(enabled="yes"),
        {"retention": (FIX, CRIT, "hscheck.hint.retention_disabled")},
    ),
    "no retention section at all": (
        lambda hs: hs.pop("retention"),
        {
            "retention": (FIX, CRIT, "hscheck.hint.retention_disabled"),
            "retention_bounds": (FIX, WARN, "hscheck.hint.bounds_absent"),
            "retention_default": (FIX, WARN, "hscheck.hint.no_default_policy"),
        },
    ),
    "no purge_jobs: Synapse's daily job over every lifetime": (_drop_retention("purge_jobs"), {}),
    "empty purge_jobs: the same default": (_retention(purge_jobs=[]), {}),
    "contiguous purge jobs": (
        _retention(
            purge_jobs=[
                {"interval": "12h", "longest_max_lifetime": "30d"},
                {"interval": "1d", "shortest_max_lifetime": "30d"},
            ]
        ),
        {},
    ),
    "purge jobs leaving short lifetimes out": (
        _retention(purge_jobs=[{"interval": "1d", "shortest_max_lifetime": "30d"}]),
        {"purge_jobs": (FIX, CRIT, GAP)},
    ),
    "purge jobs leaving a gap in the middle": (
        _retention(
            purge_jobs=[
                {"interval": "1d", "longest_max_lifetime": "30d"},
                {"interval": "1d", "shortest_max_lifetime": "90d"},
            ]
        ),
        {"purge_jobs": (FIX, CRIT, GAP)},
    ),
    "purge jobs stopping below the network's maximum": (
        _retention(purge_jobs=[{"interval": "1d", "longest_max_lifetime": "200d"}]),
        {"purge_jobs": (FIX, CRIT, GAP)},
    ),
    "purge job without an interval": (
        _retention(purge_jobs=[{"shortest_max_lifetime": "1d"}]),
        {
            "purge_jobs": (FIX, CRIT, "hscheck.hint.purge_jobs_malformed"),
            "purge_interval": (NOT_CHECKED, WARN, "hscheck.hint.purge_jobs_malformed"),
        },
    ),
    "purge job slower than SantéGuard's purge_interval": (
        _retention(purge_jobs=[{"interval": "1w"}]),
        {"purge_interval": (FIX, WARN, "hscheck.hint.purge_interval")},
    ),
    "a slow job for lifetimes the network never uses": (
        _retention(
            purge_jobs=[
                {"interval": "1d", "longest_max_lifetime": "365d"},
                {"interval": "4w", "shortest_max_lifetime": "365d"},
            ]
        ),
        {},
    ),
    "purge interval in milliseconds": (_retention(purge_jobs=[{"interval": 3_600_000}]), {}),
    "allowed_lifetime_min above the network's minimum": (
        _retention(allowed_lifetime_min="7d"),
        {"retention_bounds": (FIX, CRIT, "hscheck.hint.bounds_narrower")},
    ),
    "allowed_lifetime_max below the network's maximum": (
        _retention(allowed_lifetime_max="90d"),
        {"retention_bounds": (FIX, CRIT, "hscheck.hint.bounds_narrower")},
    ),
    "no allowed lifetimes": (
        _drop_retention("allowed_lifetime_min", "allowed_lifetime_max"),
        {"retention_bounds": (FIX, WARN, "hscheck.hint.bounds_absent")},
    ),
    "only a minimum": (
        _drop_retention("allowed_lifetime_max"),
        {"retention_bounds": (FIX, WARN, "hscheck.hint.bounds_absent")},
    ),
    "allowed lifetimes wider than the network's": (
        _retention(allowed_lifetime_max="2y"),
        {"retention_bounds": (FIX, WARN, "hscheck.hint.bounds_wider")},
    ),
    "allowed lifetimes in milliseconds, equal": (
        _retention(allowed_lifetime_min=86_400_000, allowed_lifetime_max="31536000000"),
        {},
    ),
    "an unreadable allowed lifetime": (
        _retention(allowed_lifetime_max="one year"),
        {"retention_bounds": (FIX, CRIT, "hscheck.hint.bounds_malformed")},
    ),
    "no default policy": (
        _drop_retention("default_policy"),
        {"retention_default": (FIX, WARN, "hscheck.hint.no_default_policy")},
    ),
    "a default policy other than the network's": (
        _retention(default_policy={"max_lifetime": "90d"}),
        {"retention_default": (FIX, WARN, "hscheck.hint.default_policy_differs")},
    ),
    # -- encryption -----------------------------------------------------------------
    "encryption by default for invite-only rooms only": (
        _set(encryption_enabled_by_default_for_room_type="invite"),
        {"encryption": (FIX, CRIT, "hscheck.hint.encryption")},
    ),
    "encryption by default absent": (
        lambda hs: hs.pop("encryption_enabled_by_default_for_room_type"),
        {"encryption": (FIX, CRIT, "hscheck.hint.encryption")},
    ),
    # -- registration ---------------------------------------------------------------
    "open registration": (
        _set(enable_registration=True),
        {"open_registration": (FIX, CRIT, "hscheck.hint.registration_open")},
    ),
    "open registration, captcha only": (
        _set(enable_registration=True, enable_registration_captcha=True),
        {"open_registration": (FIX, CRIT, "hscheck.hint.registration_open")},
    ),
    "open registration written as a string": (
        _set(enable_registration="true"),
        {"open_registration": (FIX, CRIT, "hscheck.hint.registration_open")},
    ),
    "the legacy disable_registration: false": (
        _set(disable_registration=False),
        {"open_registration": (FIX, CRIT, "hscheck.hint.registration_open")},
    ),
    "registration without verification": (
        _set(enable_registration=True, enable_registration_without_verification=True),
        {"open_registration": (FIX, CRIT, "hscheck.hint.registration_unverified")},
    ),
    "registration by token": (
        _set(enable_registration=True, registration_requires_token=True),
        {},
    ),
    "registration by any e-mail address": (
        _set(enable_registration=True, registrations_require_3pid=["email"]),
        {"open_registration": (FIX, WARN, "hscheck.hint.registration_any_3pid")},
    ),
    "registration by the network's e-mail addresses": (
        _set(
            enable_registration=True,
            registrations_require_3pid=["email"],
            allowed_local_3pids=[{"medium": "email", "pattern": r"^[^@]+@chu\.example$"}],
        ),
        {},
    ),
    "a stray without-verification flag, registration closed": (
        _set(enable_registration_without_verification=True),
        {},
    ),
    # -- federation -----------------------------------------------------------------
    "no federation whitelist": (
        lambda hs: hs.pop("federation_domain_whitelist"),
        {"federation": (FIX, CRIT, "hscheck.hint.federation_open")},
    ),
    "no whitelist, keys served": (
        _both(lambda hs: hs.pop("federation_domain_whitelist"), _listeners("client", "keys")),
        {"federation": (FIX, CRIT, "hscheck.hint.federation_open")},
    ),
    "no whitelist, no federation listener: federation off": (
        _both(lambda hs: hs.pop("federation_domain_whitelist"), _listeners("client")),
        {},
    ),
    "no whitelist, no listener here but workers": (
        _both(
            lambda hs: hs.pop("federation_domain_whitelist"),
            _listeners("client"),
            _set(instance_map={"main": {}, "federation_reader1": {}}),
        ),
        {"federation": (FIX, CRIT, "hscheck.hint.federation_open")},
    ),
    "a whitelist that is not a list": (
        _set(federation_domain_whitelist=PARTNER),
        {"federation": (FIX, CRIT, "hscheck.hint.federation_malformed")},
    ),
    "a server outside the allow-list": (
        _set(federation_domain_whitelist=[PARTNER, "matrix.org"]),
        {"federation": (FIX, WARN, "hscheck.hint.federation_extra")},
    ),
    "an allowed server missing from the whitelist": (
        _set(federation_domain_whitelist=[]),
        {"federation": (FIX, WARN, "hscheck.hint.federation_missing")},
    ),
    "an empty whitelist, no federation listener": (
        _both(_set(federation_domain_whitelist=[]), _listeners("client")),
        {},
    ),
    "the server itself in the whitelist": (
        _set(federation_domain_whitelist=[PARTNER, NETWORK.server_name]),
        {},
    ),
    # -- URL previews ---------------------------------------------------------------
    "URL previews on": (
        _set(url_preview_enabled=True),
        {"url_previews": (FIX, WARN, "hscheck.hint.url_previews")},
    ),
    # -- passwords ------------------------------------------------------------------
    "no password policy, password login off": (
        lambda hs: passwords(hs).pop("policy"),
        {"password_policy": (FIX, WARN, "hscheck.hint.password_policy")},
    ),
    "no password policy, password login on": (
        _both(lambda hs: hs.pop("password_config"), lambda hs: hs.pop("oidc_providers")),
        {"password_policy": (FIX, CRIT, "hscheck.hint.password_policy")},
    ),
    "policy disabled": (
        lambda hs: passwords(hs)["policy"].update(enabled=False),
        {"password_policy": (FIX, WARN, "hscheck.hint.password_policy")},
    ),
    "shorter than 14 characters": (
        lambda hs: passwords(hs)["policy"].update(minimum_length=12),
        {"password_policy": (FIX, WARN, "hscheck.hint.password_policy")},
    ),
    **{
        f"no {key}": (
            (lambda k: lambda hs: passwords(hs)["policy"].pop(k))(key),
            {"password_policy": (FIX, WARN, "hscheck.hint.password_policy")},
        )
        for key in ("require_digit", "require_symbol", "require_lowercase", "require_uppercase")
    },
    "password login on beside Pro Santé Connect": (
        lambda hs: passwords(hs).update(enabled=True),
        {"password_with_sso": (FIX, WARN, "hscheck.hint.password_with_sso")},
    ),
    "password_config absent beside Pro Santé Connect": (
        lambda hs: passwords(hs).pop("enabled"),
        {"password_with_sso": (FIX, WARN, "hscheck.hint.password_with_sso")},
    ),
    "PSC found by its issuer": (
        _both(
            lambda hs: passwords(hs).update(enabled=True),
            lambda hs: hs["oidc_providers"][0].update(idp_id="sante"),
        ),
        {"password_with_sso": (FIX, WARN, "hscheck.hint.password_with_sso")},
    ),
    "password login for re-authentication only": (
        lambda hs: passwords(hs).update(enabled="only_for_reauth"),
        {},
    ),
    "local password database off": (
        lambda hs: passwords(hs).update(enabled=True, localdb_enabled=False),
        {},
    ),
    "local database off but a password provider": (
        _both(
            lambda hs: passwords(hs).update(enabled=True, localdb_enabled=False),
            _set(password_providers=[{"module": "ldap_auth_provider.LdapAuthProvider"}]),
        ),
        {"password_with_sso": (FIX, WARN, "hscheck.hint.password_with_sso")},
    ),
    "passwords without any SSO": (
        _both(lambda hs: passwords(hs).update(enabled=True), lambda hs: hs.pop("oidc_providers")),
        {},
    ),
}


@pytest.fixture
def registration(tmp_path: Path) -> Path:
    path = tmp_path / "registration.yaml"
    path.write_text("id: santeguard\n")
    return path


def test_the_good_homeserver_passes_everything(registration: Path) -> None:
    got = findings(good(registration), registration)
    assert {f.state for f in got.values()} == {State.OK}
    assert exit_code(list(got.values())) == 0


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_variant_changes_only_its_findings(registration: Path, case: str) -> None:
    mutate, expected = CASES[case]
    hs = good(registration)
    mutate(hs)
    got = findings(hs, registration)
    changed = {
        id: (f.state, f.severity, f.problem) for id, f in got.items() if f.state is not State.OK
    }
    assert changed == expected
    for id, (state, _, _) in expected.items():
        if state is State.FIX:
            f = got[id]
            assert f.fix_yaml is not None or f.fix is not None, id
    severities = {s for st, s, _ in expected.values() if st is State.FIX}
    codes = {frozenset(): {0, 3}, frozenset({WARN}): {4}}
    assert exit_code(list(got.values())) in codes.get(frozenset(severities), {1})


def test_critical_findings_win_over_warnings(registration: Path) -> None:
    hs = good(registration)
    hs["url_preview_enabled"] = True
    hs["enable_registration"] = True
    assert exit_code(list(findings(hs, registration).values())) == 1


def test_without_santeguards_config_comparisons_are_not_checked(registration: Path) -> None:
    got = {f.id: f for f in check_homeserver(good(registration), registration)}
    not_checked = {id for id, f in got.items() if f.state is State.NOT_CHECKED}
    assert not_checked == {
        "purge_interval",
        "retention_bounds",
        "retention_default",
        "federation",
        "enforcer_admin",
    }
    assert got["enforcer_admin"].problem == "hscheck.hint.enforcer_needs_config"
    assert {f.state for id, f in got.items() if id not in not_checked} == {State.OK}
    assert exit_code(list(got.values())) == 3


def test_without_config_absent_settings_are_still_wrong(registration: Path) -> None:
    hs = good(registration)
    hs.pop("federation_domain_whitelist")
    hs["retention"] = {
        "enabled": True,
        "purge_jobs": [{"interval": "1d", "longest_max_lifetime": "30d"}],
    }
    got = {f.id: f for f in check_homeserver(hs, registration)}
    assert got["federation"].state is State.FIX
    assert got["retention_bounds"].problem == "hscheck.hint.bounds_absent"
    assert got["retention_default"].problem == "hscheck.hint.no_default_policy"
    # Without the network's bounds, every lifetime must be purged by some job.
    assert got["purge_jobs"].problem == "hscheck.hint.purge_jobs_gap"
    assert got["purge_jobs"].params == {"low": "30", "high": "∞"}


def test_the_fix_blocks_carry_the_networks_values(registration: Path) -> None:
    hs = good(registration)
    hs["retention"] = {"enabled": False}
    hs.pop("federation_domain_whitelist")
    got = findings(hs, registration)
    assert got["retention"].fix_yaml == (
        "retention:\n"
        "  enabled: true\n"
        "  default_policy:\n"
        "    max_lifetime: 180d\n"
        "  allowed_lifetime_min: 1d\n"
        "  allowed_lifetime_max: 1y\n"
        "  purge_jobs:\n"
        "  - interval: 1d"
    )
    assert got["federation"].fix_yaml == f"federation_domain_whitelist:\n- {PARTNER}"


def test_malformed_sections_do_not_crash(registration: Path) -> None:
    hs: dict[str, Any] = {
        "modules": {"module": "x"},
        "retention": ["enabled"],
        "password_config": None,
        "listeners": "all",
        "oidc_providers": {"idp_id": "psc"},
        "federation_domain_whitelist": None,
        "instance_map": [],
    }
    got = {f.id: f for f in check_homeserver(hs, registration, network=NETWORK)}
    assert got["retention"].state is State.FIX
    assert got["antispam"].state is State.FIX
    assert got["federation"].state is State.OK  # no listener serves federation
