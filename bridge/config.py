"""Configuration: a YAML file in the mautrix bridges' shape, overridable from the environment.

The YAML file is the base; ``SANTEGUARD_<SECTION>__<KEY>`` environment variables win over
it (so Kubernetes can inject tokens from Secrets). The file is only ever read: nothing in
SantéGuard writes configuration back at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

_PLACEHOLDER = "This value is generated when generating the registration"


class ConfigError(Exception):
    """Raised with a readable message naming the key path(s) that are wrong."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HomeserverConfig(_Section):
    address: str = Field(description="Client-server API base URL of the homeserver.")
    domain: str = Field(description="Server name: the part after ':' in user IDs.")
    verify_ssl: bool = True

    @field_validator("address")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class AppserviceConfig(_Section):
    address: str = Field(description="URL at which the homeserver reaches SantéGuard.")
    hostname: str = "127.0.0.1"
    port: int = Field(29340, ge=1, le=65535)
    id: str = "santeguard"
    bot_username: str = "santeguard"
    bot_displayname: str = "SantéGuard"
    as_token: SecretStr
    hs_token: SecretStr
    registration: str | None = None
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)

    @field_validator("as_token", "hs_token")
    @classmethod
    def _not_placeholder(cls, v: SecretStr) -> SecretStr:
        value = v.get_secret_value()
        if not value or value == _PLACEHOLDER:
            raise ValueError("is not set: run `santeguard generate-registration` first")
        return v


class AntispamConfig(_Section):
    path: str = "/_santeguard/antispam"
    token: SecretStr | None = None


class DatabaseConfig(_Section):
    uri: str = "sqlite:///santeguard.db"
    min_size: int = Field(1, ge=1)
    max_size: int = Field(10, ge=1)
    sqlite_synchronous: Literal["normal", "full"] = "normal"

    @field_validator("uri")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(("sqlite:", "postgres://", "postgresql://")):
            raise ValueError("must be sqlite:///path or postgres://user@host/db")
        return v


class DispatchConfig(_Section):
    max_concurrent_rooms: int = Field(8, ge=1, le=256)
    max_attempts: int = Field(5, ge=1)
    retry_base_seconds: float = Field(0.5, gt=0)
    keep_done_seconds: int = Field(3600, ge=0)


class GateConfig(_Section):
    protect_by_default: bool = True
    allowed_servers: list[str] = Field(default_factory=list)
    exempt_users: list[str] = Field(default_factory=list)
    require_encryption: bool = True
    unencrypted_room_types: list[str] = Field(default_factory=list)
    homeserver_encrypts_by_default: bool = False
    verification_days: int = Field(30, ge=1)
    admin_room: str | None = None
    reverify_hours: float = Field(24, gt=0)


class DirectoryConfig(_Section):
    source: Literal["extract", "fhir"] = "extract"
    fhir_base_url: str = "https://gateway.api.esante.gouv.fr/fhir/v2"
    fhir_api_key: SecretStr | None = None
    timeout_seconds: float = Field(5, gt=0)
    retries: int = Field(2, ge=0)
    cache_ttl_seconds: float = Field(300, ge=0)
    psc_idp_id: str | None = None
    homeserver_admin_token: SecretStr | None = None


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class BotConfig(_Section):
    prefix: str = "!sg"
    admins: list[str] = Field(default_factory=list)
    language: Literal["fr", "en"] = "fr"

    @field_validator("admins")
    @classmethod
    def _mxids(cls, v: list[str]) -> list[str]:
        for mxid in v:
            if not (mxid.startswith("@") and ":" in mxid):
                raise ValueError(f"{mxid!r} is not a Matrix user ID (@user:server)")
        return v


class EncryptionConfig(_Section):
    """The bot's own encrypted device (docs/e2ee.md)."""

    enabled: bool = True
    store_path: str = Field(
        "santeguard-crypto",
        description="Directory (0700) of the device's keys and nio store; must persist.",
    )
    device_display_name: str = "SantéGuard"
    key_wait_seconds: float = Field(2.0, ge=0, le=30)
    give_up_seconds: float = Field(60.0, gt=0)
    sync_timeout_ms: int = Field(30_000, ge=1000, le=120_000)


class Config(BaseSettings):
    """The whole configuration. Secrets are ``SecretStr`` so they never print."""

    model_config = SettingsConfigDict(
        env_prefix="SANTEGUARD_", env_nested_delimiter="__", extra="forbid"
    )

    homeserver: HomeserverConfig
    appservice: AppserviceConfig
    antispam: AntispamConfig = Field(default_factory=AntispamConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    dispatch: DispatchConfig = Field(default_factory=DispatchConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    directory: DirectoryConfig = Field(default_factory=DirectoryConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    bot: BotConfig = Field(default_factory=BotConfig)
    encryption: EncryptionConfig = Field(default_factory=EncryptionConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the YAML file, which comes in as init kwargs.
        return env_settings, init_settings

    @property
    def bot_mxid(self) -> str:
        return f"@{self.appservice.bot_username}:{self.homeserver.domain}"

    def secrets(self) -> list[str]:
        """Every configured secret value, for log scrubbing."""
        values = [
            self.appservice.as_token,
            self.appservice.hs_token,
            self.antispam.token,
            self.directory.fhir_api_key,
            self.directory.homeserver_admin_token,
        ]
        out = [v.get_secret_value() for v in values if v is not None]
        return [s for s in out if len(s) >= 6]


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors(include_url=False, include_input=False):
        path = ".".join(str(p) for p in e["loc"]) or "(root)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {path}: {msg}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read, validate and return the configuration; raise ``ConfigError`` on any problem.

    Tokens missing from the file are read from ``appservice.registration`` (the file that
    ``generate-registration`` wrote and Synapse reads), so they live in one place.
    """
    raw = read_raw_config(path, overrides)
    _fill_tokens_from_registration(raw, Path(path).parent)
    try:
        return Config(**raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(e)) from None


def read_raw_config(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Parse the YAML file into a plain mapping, without validation."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"configuration file not found: {p}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{p} is not valid YAML: {e}") from e
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections")
    if overrides:
        raw = _deep_merge(raw, overrides)
    return dict(raw)


def _fill_tokens_from_registration(raw: dict[str, Any], base: Path) -> None:
    section = raw.get("appservice")
    if not isinstance(section, dict) or not section.get("registration"):
        return
    if section.get("as_token") and section.get("hs_token"):
        return
    reg_path = base / str(section["registration"])
    try:
        reg = yaml.safe_load(reg_path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(
            f"appservice.registration: {reg_path} does not exist; "
            "run `santeguard generate-registration` first"
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"appservice.registration: {reg_path} is not valid YAML: {e}") from None
    for key in ("as_token", "hs_token"):
        if not section.get(key) and isinstance(reg, dict) and reg.get(key):
            section[key] = reg[key]


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


__all__ = ["Config", "ConfigError", "InitSettingsSource", "load_config"]
