"""What a throwaway Synapse is told: homeserver.yaml, its log config, its signing key.

Pure functions of their arguments (besides key generation), so :class:`LocalSynapse`
can rebuild the files on every start, e.g. after moving to another port.
"""

from __future__ import annotations

import base64
import os
import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "ANTISPAM_CALLBACKS",
    "HIGH_RATE",
    "AntispamModule",
    "deep_merge",
    "generate_signing_key",
    "homeserver_config",
    "log_config",
    "postgres_args",
    "write_private",
]

#: Callbacks that synapse-http-antispam 0.5.1 can register and Synapse 1.163 accepts.
#: ``accept_make_join`` is deliberately absent: Synapse 1.163 refuses it at start-up.
ANTISPAM_CALLBACKS: frozenset[str] = frozenset(
    {
        "user_may_join_room",
        "user_may_invite",
        "user_may_send_3pid_invite",
        "user_may_create_room",
        "user_may_create_room_alias",
        "user_may_publish_room",
        "check_username_for_spam",
        "check_login_for_spam",
        "check_event_for_spam",
        "federated_user_may_invite",
    }
)

#: Every rate limit is set this high, so tests and benchmarks never hit one.
HIGH_RATE: Mapping[str, float] = {"per_second": 10_000.0, "burst_count": 100_000.0}


@dataclass(frozen=True)
class AntispamModule:
    """Configuration of the ``synapse_http_antispam.HTTPAntispam`` module.

    ``fail_open`` maps callback names to True to let Synapse allow the action when the
    antispam server is unreachable. Every callback not listed fails closed, including
    ``check_event_for_spam`` (which the module itself would fail open by default).
    """

    base_url: str
    token: str = field(repr=False)
    callbacks: tuple[str, ...] = (
        "user_may_invite",
        "user_may_join_room",
        "user_may_create_room",
        "check_event_for_spam",
    )
    fail_open: Mapping[str, bool] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.callbacks:
            # An empty list would make the module register every callback, including
            # accept_make_join, which Synapse refuses.
            raise ValueError("AntispamModule.callbacks must name at least one callback")
        unknown = [c for c in (*self.callbacks, *self.fail_open) if c not in ANTISPAM_CALLBACKS]
        if unknown:
            raise ValueError(f"unsupported antispam callbacks: {', '.join(sorted(unknown))}")

    def module_config(self) -> dict[str, Any]:
        """The ``modules:`` entry for homeserver.yaml."""
        fail_open = {name: False for name in self.callbacks}
        fail_open.update(self.fail_open)
        return {
            "module": "synapse_http_antispam.HTTPAntispam",
            "config": {
                "base_url": self.base_url.rstrip("/"),
                "authorization": self.token,
                "enabled_callbacks": list(self.callbacks),
                "fail_open": fail_open,
                "do_ping": False,
            },
        }


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``: mappings recursively, the rest replaced."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def generate_signing_key() -> str:
    """A Synapse signing key file line: ``ed25519 <key id> <unpadded base64 seed>``."""
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    alphabet = string.ascii_letters + string.digits
    key_id = "a_" + "".join(secrets.choice(alphabet) for _ in range(4))
    encoded = base64.b64encode(seed).decode("ascii").rstrip("=")
    return f"ed25519 {key_id} {encoded}\n"


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (it may hold secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def postgres_args(dsn: str) -> dict[str, Any]:
    """psycopg2 connection arguments for a ``postgres://`` DSN (Synapse takes no URL)."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError("postgres_dsn must be a postgres:// or postgresql:// URL")
    args: dict[str, Any] = {"dbname": unquote(parts.path.lstrip("/")) or "postgres"}
    if parts.hostname:
        args["host"] = parts.hostname
    if parts.port:
        args["port"] = parts.port
    if parts.username:
        args["user"] = unquote(parts.username)
    if parts.password:
        args["password"] = unquote(parts.password)
    args.update(parse_qsl(parts.query))
    return args


def _database_config(workdir: Path, postgres_dsn: str | None) -> dict[str, Any]:
    if postgres_dsn is None:
        return {"name": "sqlite3", "args": {"database": str(workdir / "homeserver.db")}}
    return {
        "name": "psycopg2",
        "args": {**postgres_args(postgres_dsn), "cp_min": 1, "cp_max": 5},
    }


def _rate_limits() -> dict[str, Any]:
    rate = dict(HIGH_RATE)
    return {
        "rc_message": rate,
        "rc_registration": rate,
        "rc_registration_token_validity": rate,
        "rc_login": {"address": rate, "account": rate, "failed_attempts": rate},
        "rc_admin_redaction": rate,
        "rc_joins": {"local": rate, "remote": rate},
        "rc_joins_per_room": rate,
        "rc_invites": {"per_room": rate, "per_user": rate, "per_issuer": rate},
        "rc_third_party_invite": rate,
        "rc_3pid_validation": rate,
        "rc_key_requests": rate,
        "rc_media_create": rate,
        "rc_presence": {"per_user": rate},
        "rc_delayed_event_mgmt": rate,
        "rc_room_creation": rate,
        "rc_reports": rate,
        "rc_user_directory": rate,
        "rc_profile": rate,
    }


def homeserver_config(
    *,
    workdir: Path,
    server_name: str,
    port: int,
    base_url: str,
    log_config_path: Path,
    signing_key_path: Path,
    registration_shared_secret: str,
    macaroon_secret_key: str,
    form_secret: str,
    appservice_registrations: Sequence[Path] = (),
    antispam: AntispamModule | None = None,
    postgres_dsn: str | None = None,
    encryption_by_default: bool = False,
    oidc_providers: Sequence[Mapping[str, Any]] = (),
    extra_modules: Sequence[Mapping[str, Any]] = (),
    extra_config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The homeserver.yaml content (``extra_config`` deep-merged last).

    Loopback only, no outbound federation or key servers, rate limits out of the way.
    """
    config: dict[str, Any] = {
        "server_name": server_name,
        "public_baseurl": base_url + "/",
        "pid_file": str(workdir / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": _database_config(workdir, postgres_dsn),
        "log_config": str(log_config_path),
        "media_store_path": str(workdir / "media_store"),
        "signing_key_path": str(signing_key_path),
        "report_stats": False,
        "enable_metrics": False,
        "enable_registration": False,
        "bcrypt_rounds": 4,  # password hashing in ms, not ~0.3 s per register/login
        # The policy a health network needs (check-homeserver); the harness registers its
        # users with the shared-secret admin API, which the policy does not apply to.
        "password_config": {
            "policy": {
                "enabled": True,
                "minimum_length": 14,
                "require_digit": True,
                "require_symbol": True,
                "require_lowercase": True,
                "require_uppercase": True,
            }
        },
        "registration_shared_secret": registration_shared_secret,
        "macaroon_secret_key": macaroon_secret_key,
        "form_secret": form_secret,
        # No outbound network: no key servers, no federation destinations, no previews.
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "allow_profile_lookup_over_federation": False,
        "url_preview_enabled": False,
        "app_service_config_files": [str(p) for p in appservice_registrations],
        "experimental_features": {
            "msc2409_to_device_messages_enabled": True,
            "msc3202_transaction_extensions": True,
        },
        "encryption_enabled_by_default_for_room_type": "all" if encryption_by_default else "off",
        **_rate_limits(),
    }
    modules = [antispam.module_config()] if antispam is not None else []
    modules += [dict(m) for m in extra_modules]
    if modules:
        config["modules"] = modules
    if oidc_providers:
        config["oidc_providers"] = [dict(p) for p in oidc_providers]
    return deep_merge(config, extra_config or {})


def log_config(log_path: Path) -> dict[str, Any]:
    """Python logging config: everything from INFO to ``log_path``, for failure reports."""
    return {
        "version": 1,
        "formatters": {
            "precise": {
                "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s"
                " - %(request)s - %(message)s"
            }
        },
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "precise",
                "filename": str(log_path),
                "encoding": "utf8",
            }
        },
        "loggers": {
            "synapse.storage.SQL": {"level": "INFO"},
            "twisted": {"level": "WARNING"},
        },
        "root": {"level": "INFO", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }
