"""Every check over a parsed homeserver.yaml, in the order they are shown.

Pure: the only file looked at is the registration it is given. What SantéGuard's own
config says (``-c``: retention bounds, purge interval, allowed servers) comes in as a
:class:`Network`; the live enforcer check's result comes in as a finding.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bridge.config import Config
from bridge.homeserver_check.access_checks import access_checks
from bridge.homeserver_check.gate_checks import gate_checks
from bridge.homeserver_check.live import LiveTarget, skipped
from bridge.homeserver_check.model import Finding, Network
from bridge.homeserver_check.retention_checks import retention_checks


def network_from_config(cfg: Config) -> Network:
    return Network(
        server_name=cfg.homeserver.domain,
        bounds=cfg.retention.bounds,
        purge_interval_ms=cfg.retention.purge_interval_ms,
        allowed_servers=frozenset(cfg.gate.allowed_servers),
        psc_idp_id=cfg.directory.psc_idp_id,
        antispam_url=cfg.appservice.address.rstrip("/") + cfg.antispam.path,
        enforcer=f"@{cfg.appservice.enforcer_username}:{cfg.homeserver.domain}",
    )


def live_target(cfg: Config) -> LiveTarget:
    return LiveTarget(
        address=cfg.homeserver.address,
        enforcer=f"@{cfg.appservice.enforcer_username}:{cfg.homeserver.domain}",
        as_token=cfg.appservice.as_token.get_secret_value(),
        verify_ssl=cfg.homeserver.verify_ssl,
    )


def check_homeserver(
    config: Mapping[str, Any],
    registration: Path | None,
    base: Path | None = None,
    *,
    network: Network | None = None,
    enforcer: Finding | None = None,
) -> list[Finding]:
    """Every finding; ``base`` is homeserver.yaml's directory, ``enforcer`` the live
    check's result (not checked when None: it needs ``-c`` and the running server)."""
    return [
        *gate_checks(config, registration, base, network),
        *retention_checks(config, network),
        *access_checks(config, network),
        enforcer or skipped("hscheck.hint.enforcer_needs_config"),
    ]
