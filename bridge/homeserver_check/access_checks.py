"""Who can get in and what leaves the server: registration, federation, URL previews,
passwords beside Pro Santé Connect. Keys and defaults as Synapse reads them
(``synapse/config/registration.py``, ``federation.py``, ``auth.py``, ``oidc.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.homeserver_check.model import (
    Finding,
    Network,
    Severity,
    as_dict,
    not_checked,
    ok,
    to_fix,
    yaml_block,
)

CRIT, WARN = Severity.CRITICAL, Severity.WARNING
MIN_PASSWORD_LENGTH = 14
PASSWORD_CLASSES = ("require_digit", "require_symbol", "require_lowercase", "require_uppercase")
PSC_ISSUER = "esante.gouv.fr"


def truthy(value: object) -> bool:
    """Synapse's ``strtobool(str(value))`` for the registration flags."""
    return str(value).strip().lower() in {"y", "yes", "t", "true", "on", "1"}


def registration_open(config: Mapping[str, Any]) -> Finding:
    enabled = truthy(config.get("enable_registration", False))
    if "disable_registration" in config:
        enabled = not truthy(config["disable_registration"])
    if not enabled:
        return ok("open_registration")
    fix_yaml = yaml_block({"enable_registration": False})
    if truthy(config.get("enable_registration_without_verification", False)):
        return to_fix(
            "open_registration",
            CRIT,
            "hscheck.hint.registration_unverified",
            fix="hscheck.fix.registration",
            fix_yaml=fix_yaml,
        )
    if config.get("registration_requires_token"):
        return ok("open_registration")
    if config.get("registrations_require_3pid"):
        if config.get("allowed_local_3pids"):
            return ok("open_registration")
        return to_fix(
            "open_registration",
            WARN,
            "hscheck.hint.registration_any_3pid",
            fix="hscheck.fix.registration",
            fix_yaml=fix_yaml,
        )
    return to_fix(
        "open_registration",
        CRIT,
        "hscheck.hint.registration_open",
        fix="hscheck.fix.registration",
        fix_yaml=fix_yaml,
    )


def federation_possible(config: Mapping[str, Any]) -> bool:
    """Whether this homeserver.yaml lets another server talk to it: a listener serving
    federation or the signing keys (without them no server accepts ours), or workers
    (whose listeners are in their own files)."""
    if config.get("worker_app") or len(as_dict(config.get("instance_map")).keys() - {"main"}):
        return True
    listeners = config.get("listeners")
    for listener in listeners if isinstance(listeners, list) else []:
        resources = as_dict(listener).get("resources")
        for resource in resources if isinstance(resources, list) else []:
            names = as_dict(resource).get("names") or []
            if isinstance(names, list) and {"federation", "keys"} & set(map(str, names)):
                return True
    return False


def federation(config: Mapping[str, Any], network: Network | None) -> Finding:
    raw = config.get("federation_domain_whitelist")
    allowed = sorted(network.allowed_servers) if network else []
    fix_yaml = yaml_block({"federation_domain_whitelist": allowed})
    fix = "hscheck.fix.federation" if network else "hscheck.fix.federation_list"
    if raw is None:
        if not federation_possible(config):
            return ok("federation")
        return to_fix(
            "federation", CRIT, "hscheck.hint.federation_open", fix=fix, fix_yaml=fix_yaml
        )
    if not isinstance(raw, list):
        return to_fix(
            "federation", CRIT, "hscheck.hint.federation_malformed", fix=fix, fix_yaml=fix_yaml
        )
    if network is None:
        return not_checked("federation", CRIT, "hscheck.hint.needs_config")
    listed = {str(d) for d in raw} - {network.server_name}
    extra = sorted(listed - network.allowed_servers)
    if extra:
        return to_fix(
            "federation",
            WARN,
            "hscheck.hint.federation_extra",
            params={"servers": ", ".join(extra)},
            fix=fix,
            fix_yaml=fix_yaml,
        )
    missing = sorted(network.allowed_servers - listed - {network.server_name})
    if missing and federation_possible(config):
        return to_fix(
            "federation",
            WARN,
            "hscheck.hint.federation_missing",
            params={"servers": ", ".join(missing)},
            fix=fix,
            fix_yaml=fix_yaml,
        )
    return ok("federation")


def url_previews(config: Mapping[str, Any]) -> Finding:
    if config.get("url_preview_enabled") is True:
        return to_fix(
            "url_previews",
            WARN,
            "hscheck.hint.url_previews",
            fix_yaml=yaml_block({"url_preview_enabled": False}),
        )
    return ok("url_previews", WARN)


def password_login(config: Mapping[str, Any]) -> bool:
    """Whether users can log in with a password (``password_config.enabled``, which
    defaults to true unless authentication is delegated to MAS, and ``localdb_enabled``
    unless a password provider replaces the local database)."""
    section = as_dict(config.get("password_config"))
    delegated = bool(as_dict(config.get("matrix_authentication_service")).get("enabled"))
    enabled = section.get("enabled", not delegated)
    if not enabled or enabled == "only_for_reauth":
        return False
    if section.get("localdb_enabled", True) is False:
        return bool(config.get("password_providers"))
    return True


def password_policy(config: Mapping[str, Any]) -> Finding:
    policy = as_dict(as_dict(config.get("password_config")).get("policy"))
    severity = CRIT if password_login(config) else WARN
    missing = [] if policy.get("enabled") is True else ["enabled"]
    length = policy.get("minimum_length")
    if not (type(length) is int and length >= MIN_PASSWORD_LENGTH):
        missing.append("minimum_length")
    missing += [key for key in PASSWORD_CLASSES if policy.get(key) is not True]
    if not missing:
        return ok("password_policy", severity)
    block = {"enabled": True, "minimum_length": MIN_PASSWORD_LENGTH}
    block.update({key: True for key in PASSWORD_CLASSES})
    return to_fix(
        "password_policy",
        severity,
        "hscheck.hint.password_policy",
        params={"keys": ", ".join(missing)},
        fix_yaml=yaml_block({"password_config": {"policy": block}}),
    )


def _providers(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    listed = config.get("oidc_providers")
    providers = [as_dict(p) for p in listed] if isinstance(listed, list) else []
    legacy = as_dict(config.get("oidc_config"))
    if legacy.get("enabled"):
        providers.append(legacy)
    return providers


def is_psc(provider: Mapping[str, Any], network: Network | None) -> bool:
    idp_id = str(provider.get("idp_id", "oidc"))
    wanted = {"psc"} | ({network.psc_idp_id} if network and network.psc_idp_id else set())
    names = wanted | {f"oidc-{w}" for w in wanted}
    return idp_id in names or PSC_ISSUER in str(provider.get("issuer", ""))


def password_with_sso(config: Mapping[str, Any], network: Network | None) -> Finding:
    if not any(is_psc(p, network) for p in _providers(config)) or not password_login(config):
        return ok("password_with_sso", WARN)
    return to_fix(
        "password_with_sso",
        WARN,
        "hscheck.hint.password_with_sso",
        fix="hscheck.fix.password_with_sso",
        fix_yaml=yaml_block({"password_config": {"enabled": False}}),
    )


def access_checks(config: Mapping[str, Any], network: Network | None) -> list[Finding]:
    return [
        registration_open(config),
        federation(config, network),
        url_previews(config),
        password_policy(config),
        password_with_sso(config, network),
    ]
