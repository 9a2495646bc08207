"""A homeserver.yaml that passes every check, the network it is checked against, and
helpers to mutate it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge.homeserver_check import Finding, Network, Severity, State, check_homeserver
from bridge.retention.policy import MS_PER_DAY, RetentionBounds

ANTISPAM = "synapse_http_antispam.HTTPAntispam"
SERVER = "hs.example"
PARTNER = "partner.example"
NETWORK = Network(
    server_name=SERVER,
    bounds=RetentionBounds(
        default_max_ms=180 * MS_PER_DAY, min_ms=1 * MS_PER_DAY, max_ms=365 * MS_PER_DAY
    ),
    purge_interval_ms=MS_PER_DAY,
    allowed_servers=frozenset({PARTNER}),
    psc_idp_id="psc",
    antispam_url="http://127.0.0.1:29340/_santeguard/antispam",
    enforcer=f"@santeguard_control:{SERVER}",
)
ENFORCER_OK = Finding("enforcer_admin", Severity.CRITICAL, State.OK)

Mutation = Callable[[dict[str, Any]], object]


def good(registration: Path) -> dict[str, Any]:
    return {
        "server_name": SERVER,
        "listeners": [
            {
                "port": 8008,
                "type": "http",
                "resources": [{"names": ["client", "federation"], "compress": False}],
            }
        ],
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
        "retention": {
            "enabled": True,
            "default_policy": {"max_lifetime": "180d"},
            "allowed_lifetime_min": "1d",
            "allowed_lifetime_max": "365d",
            "purge_jobs": [{"interval": "12h"}],
        },
        "enable_registration": False,
        "federation_domain_whitelist": [PARTNER],
        "url_preview_enabled": False,
        "password_config": {
            "enabled": False,
            "policy": {
                "enabled": True,
                "minimum_length": 14,
                "require_digit": True,
                "require_symbol": True,
                "require_lowercase": True,
                "require_uppercase": True,
            },
        },
        "oidc_providers": [
            {
                "idp_id": "psc",
                "idp_name": "Pro Santé Connect",
                "issuer": "https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet",
            }
        ],
    }


def findings(hs: dict[str, Any], registration: Path | None) -> dict[str, Finding]:
    """Every finding by id, checked against NETWORK with a live check that passed."""
    found = check_homeserver(hs, registration, network=NETWORK, enforcer=ENFORCER_OK)
    return {f.id: f for f in found}


def antispam(hs: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = hs["modules"][0]["config"]
    return config


def retention(hs: dict[str, Any]) -> dict[str, Any]:
    section: dict[str, Any] = hs["retention"]
    return section


def passwords(hs: dict[str, Any]) -> dict[str, Any]:
    section: dict[str, Any] = hs["password_config"]
    return section
