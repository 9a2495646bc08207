"""Configuration: a YAML file in the mautrix bridges' shape, overridable from the environment.

The YAML file is the base; ``SANTEGUARD_<SECTION>__<KEY>`` environment variables win over
it (so Kubernetes can inject tokens from Secrets). The file is only ever read: nothing in
SantéGuard writes configuration back at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from yarl import URL

from bridge.audit.config import AuditConfig
from bridge.cluster.config import ClusterConfig
from bridge.mail.config import MailConfig
from bridge.retention.config import RetentionConfig

_PLACEHOLDER = "This value is generated when generating the registration"
#: Token values that example configurations leave for the operator to replace: as good
#: as no token (anyone who read the example knows them).
PLACEHOLDER_TOKENS = frozenset({_PLACEHOLDER, "change-me-to-a-long-random-string", "..."})


class ConfigError(Exception):
    """Raised with a readable message naming the key path(s) that are wrong."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HomeserverConfig(_Section):
    address: str = Field(description="Client-server API base URL of the homeserver.")
    domain: str = Field(description="Server name: the part after ':' in user IDs.")
    verify_ssl: bool = Field(
        True, description="Verify the homeserver's TLS certificate (keep true in production)."
    )

    @field_validator("address")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class AppserviceConfig(_Section):
    address: str = Field(description="URL at which the homeserver reaches SantéGuard.")
    hostname: str = Field(
        "127.0.0.1",
        description="Interface to listen on; keep loopback unless the homeserver runs on "
        "another host.",
    )
    port: int = Field(29340, ge=1, le=65535, description="TCP port to listen on.")
    id: str = Field(
        "santeguard", description="Appservice ID in the registration (unique per homeserver)."
    )
    bot_username: str = Field(
        "santeguard",
        description="Localpart of the bot user; the appservice's other users are "
        "`<bot_username>_*`.",
    )
    bot_displayname: str = Field("SantéGuard", description="Display name of the bot in rooms.")
    enforcer_username: str = Field(
        "santeguard_control",
        description="Localpart of the enforcement user (no E2EE device, in every room); "
        "must be in the bot's namespace (`<bot_username>_*`).",
    )
    enforcer_displayname: str = Field(
        "SantéGuard (contrôle)",
        description="Display name of the enforcement user, so members see what it is.",
    )
    as_token: SecretStr = Field(
        description="Token SantéGuard presents to the homeserver. Left out of the file, it "
        "is read from the registration file."
    )
    hs_token: SecretStr = Field(
        description="Token the homeserver presents to SantéGuard. Left out of the file, it "
        "is read from the registration file."
    )
    registration: str | None = Field(
        None,
        description="Registration file written by `santeguard generate-registration` "
        "(relative to the config file): where the tokens are read from when not set here.",
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1024,
        description="Largest transaction body accepted, in bytes (larger ones get 413 "
        "M_TOO_LARGE).",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=600,
        description="A connection whose request headers are not complete this many seconds "
        "after their first byte (or after it opened) is answered 408 and closed.",
    )
    body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A request body that makes no progress for this many seconds, or has not "
        "arrived in full by then plus its length at 8 KiB/s, is answered 408 and closed; a "
        "large body that keeps coming passes. A request whose body has arrived is never cut.",
    )
    keepalive_seconds: float = Field(
        180.0,
        gt=0,
        le=3600,
        description="A keep-alive connection idle for this many seconds between requests is "
        "closed. Keep it above the homeserver's own idle limit (Synapse: 120 s), so that "
        "Synapse closes first and never sends a gate callback on a connection being closed.",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Most HTTP connections open at once; beyond, new ones are closed as soon "
        "as accepted (the homeserver keeps a few).",
    )

    @field_validator("as_token", "hs_token")
    @classmethod
    def _not_placeholder(cls, v: SecretStr) -> SecretStr:
        value = v.get_secret_value()
        if not value.strip():
            raise ValueError("is empty: run `santeguard generate-registration` first")
        if value in PLACEHOLDER_TOKENS:
            raise ValueError(
                "is still the example's placeholder: run `santeguard generate-registration`"
            )
        return v


class AntispamConfig(_Section):
    path: str = Field(
        "/_santeguard/antispam",
        description="URL path prefix of the gate's callbacks; the antispam modules' base_url "
        "is appservice.address followed by this path.",
    )
    # Required: without a real token the synchronous gate refuses every callback.
    token: SecretStr | None = Field(
        None,
        validate_default=True,
        description="Bearer token Synapse's antispam modules send (their `authorization`). "
        "Required: an empty or placeholder token is refused, since the gate would refuse "
        "every callback.",
    )

    @field_validator("token")
    @classmethod
    def _token_set(cls, v: SecretStr | None) -> SecretStr | None:
        value = v.get_secret_value() if v is not None else ""
        if not value.strip():
            problem = "is not set: the synchronous gate would refuse every callback"
        elif value in PLACEHOLDER_TOKENS:
            problem = "is still the example's placeholder, which anyone can read"
        else:
            return v
        raise ValueError(
            f"{problem}. Set it to a long random string (python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))') and give Synapse's antispam modules the "
            "same value as `authorization`"
        )


class DatabaseConfig(_Section):
    # A relative SQLite path is relative to the config file (see ``load_config``).
    uri: str = Field(
        "sqlite:santeguard.db",
        description="sqlite:relative/path.db (relative to the config file), "
        "sqlite:///absolute/path.db, or postgres://user:password@host/database. PostgreSQL "
        "is recommended in production and needed for several replicas.",
    )
    min_size: int = Field(1, ge=1, description="Smallest connection pool (PostgreSQL only).")
    max_size: int = Field(10, ge=1, description="Largest connection pool (PostgreSQL only).")
    sqlite_synchronous: Literal["normal", "full"] = Field(
        "full",
        description="SQLite only. full: every transaction is on disk before the "
        "homeserver gets its 200 (in the intake journal, <database>-sg-intake, until the "
        "WAL's next sync), so an acknowledged transaction survives a crash of "
        "SantéGuard, of the OS and a power loss. normal (WAL, no sync per commit): survives "
        "a crash of SantéGuard only; on power loss or an OS crash, transactions already "
        "acknowledged can be lost, and the homeserver never sends them again.",
    )

    @field_validator("uri")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(("sqlite:", "postgres://", "postgresql://")):
            raise ValueError(
                "must be sqlite:relative/path.db, sqlite:///absolute/path.db "
                "or postgres://user@host/db"
            )
        if v.startswith("sqlite:"):
            url = URL(v)
            if url.host or not url.path or url.path == ":memory:":
                raise ValueError(
                    "must name a database file: sqlite:relative/path.db (relative to the "
                    "config file) or sqlite:///absolute/path.db (three slashes, then the "
                    "absolute path)"
                )
        return v


class DispatchConfig(_Section):
    max_concurrent_rooms: int = Field(
        8,
        ge=1,
        le=256,
        description="Rooms handled at the same time; a room waiting to retry holds none.",
    )
    max_attempts: int = Field(
        5, ge=1, description="Tries of a failing event before it goes to the dead letters."
    )
    retry_base_seconds: float = Field(
        0.5, gt=0, description="First retry delay; doubles on each retry."
    )
    max_backoff_seconds: float = Field(
        30.0, gt=0, description="Longest delay between two retries of one event."
    )
    keep_done_seconds: int = Field(
        3600, ge=0, description="Handled transactions (message contents) are deleted after this."
    )
    max_in_memory_events: int = Field(
        10_000,
        ge=200,
        description="Events held in memory at most (about 2 KB each); the database holds "
        "the rest and they are read back in order.",
    )
    stuck_after_seconds: float = Field(
        300.0,
        gt=0,
        description="A room whose next event has been failing this long is reported stuck "
        "(metric, /ready, admin alert).",
    )


class GateConfig(_Section):
    protect_by_default: bool = Field(
        True,
        description="Every room is protected unless an admin turns it off "
        "(`!sg room protect off`).",
    )
    reconcile_minutes: int = Field(
        60, ge=1, description="Period of the sweep that re-derives violations from members."
    )
    allowed_servers: list[str] = Field(
        default_factory=list,
        description="Other homeservers of the health network whose users may join protected "
        "rooms (this homeserver's verified users always may).",
    )
    exempt_users: list[str] = Field(
        default_factory=list,
        description="Accounts never refused (e.g. a monitoring bot); the SantéGuard bot always is.",
    )
    require_encryption: bool = Field(
        True,
        description="Protected rooms must be end-to-end encrypted from creation; clear "
        "messages in them are refused (and redacted if one slips through).",
    )
    unencrypted_room_types: list[str] = Field(
        default_factory=list,
        description="Room types (creation_content.type) that may be created without encryption.",
    )
    homeserver_encrypts_by_default: bool = Field(
        False,
        description="Set to true when homeserver.yaml has "
        "encryption_enabled_by_default_for_room_type: all.",
    )
    verification_days: int = Field(
        30,
        ge=1,
        description="How long a verification holds without a successful re-check (days).",
    )
    admin_room: str | None = Field(
        None,
        description="Room where the bot posts alerts for admins (directory unreachable, a "
        "member it could not remove…). Optional: alerts are always logged.",
    )
    reverify_hours: float = Field(
        24,
        gt=0,
        description="Period of the re-verification of every bound practitioner (hours); a "
        "new extract import triggers one too.",
    )


class DirectoryConfig(_Section):
    source: Literal["extract", "fhir"] = Field(
        "extract",
        description="extract: the imported Annuaire Santé public extract; fhir: the Annuaire "
        "Santé FHIR API (needs an API key from the ANS).",
    )
    fhir_base_url: str = Field(
        "https://gateway.api.esante.gouv.fr/fhir/v2", description="FHIR API base URL."
    )
    fhir_api_key: SecretStr | None = Field(
        None,
        description="FHIR API key (header ESANTE-API-KEY); required when source is fhir.",
    )
    timeout_seconds: float = Field(5, gt=0, description="FHIR request timeout (seconds).")
    retries: int = Field(
        2,
        ge=0,
        description="FHIR retries on 5xx, 429, timeouts and connection errors (never on "
        "other 4xx).",
    )
    cache_ttl_seconds: float = Field(
        300,
        ge=0,
        description="FHIR answers (found and not found) are cached this many seconds.",
    )
    psc_idp_id: str | None = Field(
        None,
        description="Pro Santé Connect: the idp_id of the OIDC provider in homeserver.yaml; "
        "accounts that log in through it are verified from their IDNPS. Unset: off.",
    )
    homeserver_admin_token: SecretStr | None = Field(
        None,
        description="Access token of a homeserver admin account, to read an account's Pro "
        "Santé Connect identity (needed with psc_idp_id).",
    )


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level. Logs go to stderr, secrets scrubbed from every line."
    )
    format: Literal["text", "json"] = Field(
        "text",
        description="text for humans, json for one JSON object per line (log collectors).",
    )


class BotConfig(_Section):
    prefix: str = Field(
        "!sg", description="Command prefix: messages starting with it are commands."
    )
    admins: list[str] = Field(
        default_factory=list,
        description="Network administrators (Matrix user IDs): they may run every command "
        "in every room.",
    )
    language: Literal["fr", "en"] = Field(
        "fr",
        description="Default reply language; rooms can change theirs with `!sg language`.",
    )

    @field_validator("admins")
    @classmethod
    def _mxids(cls, v: list[str]) -> list[str]:
        for mxid in v:
            if not (mxid.startswith("@") and ":" in mxid):
                raise ValueError(f"{mxid!r} is not a Matrix user ID (@user:server)")
        return v


class EncryptionConfig(_Section):
    """The bot's own encrypted device (docs/e2ee.md)."""

    enabled: bool = Field(
        True,
        description="Turn the bot's encrypted device on. Off, the bot cannot read or answer "
        "encrypted rooms, and the mail bridge cannot run.",
    )
    store_path: str = Field(
        "santeguard-crypto",
        description="Directory (0700) of the device's keys and nio store; must persist. "
        "Relative to the config file.",
    )
    store_in_database: bool = Field(
        False,
        description="Keep the device (ID, token, keys) and its crypto store in the "
        "database: whichever replica leads restores it, and saves it after every sync "
        "that changed it, before the homeserver is told the sync was received. Needed "
        "for several replicas; store_path is then only a working copy.",
    )
    device_display_name: str = Field(
        "SantéGuard", description="Name of the device as clients list it."
    )
    key_wait_seconds: float = Field(
        2.0,
        ge=0,
        le=30,
        description="How long one attempt waits for a missing room key before the event is "
        "retried later (seconds).",
    )
    give_up_seconds: float = Field(
        60.0,
        gt=0,
        description="Without the room key for this long (seconds), the bot gives up on the "
        "message and says so in the room.",
    )
    sync_timeout_ms: int = Field(
        30_000,
        ge=1000,
        le=120_000,
        description="Long-poll timeout of the device's /sync (milliseconds).",
    )


class Config(BaseSettings):
    """The whole configuration. Secrets are ``SecretStr`` so they never print."""

    model_config = SettingsConfigDict(
        env_prefix="SANTEGUARD_", env_nested_delimiter="__", extra="forbid"
    )

    homeserver: HomeserverConfig
    appservice: AppserviceConfig
    # Validated even when the section is absent, so a missing token names antispam.token.
    antispam: AntispamConfig = Field(default_factory=dict, validate_default=True)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    dispatch: DispatchConfig = Field(default_factory=DispatchConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    directory: DirectoryConfig = Field(default_factory=DirectoryConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    bot: BotConfig = Field(default_factory=BotConfig)
    encryption: EncryptionConfig = Field(default_factory=EncryptionConfig)
    mail: MailConfig = Field(default_factory=MailConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

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

    @model_validator(mode="after")
    def _mail_needs_the_device(self) -> Config:
        if self.mail.enabled and not self.encryption.enabled:
            raise ValueError(
                "mail.enabled needs encryption.enabled: the bot's device reads the linked "
                "rooms and encrypts the replies posted into them"
            )
        return self

    def secrets(self) -> list[str]:
        """Every configured secret value, for log scrubbing."""
        values = [
            self.appservice.as_token,
            self.appservice.hs_token,
            self.antispam.token,
            self.directory.fhir_api_key,
            self.directory.homeserver_admin_token,
            *self.mail.secret_values(),
            *self.audit.secret_values(),
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

    Relative paths are relative to the config file, not to the directory SantéGuard was
    started from: the SQLite database (``database.uri``) and the device store
    (``encryption.store_path``), whether they come from the file or the environment.
    """
    raw = read_raw_config(path, overrides)
    base = Path(path).absolute().parent
    _fill_tokens_from_registration(raw, base)
    try:
        cfg = Config(**raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(e)) from None
    relative = {
        "database.uri": sqlite_path(cfg.database.uri),
        "encryption.store_path": cfg.encryption.store_path,
    }
    moved = [
        _moved(key, rel, base)
        for key, rel in relative.items()
        if rel is not None and not Path(rel).is_absolute()
    ]
    if problems := [m for m in moved if m is not None]:
        raise ConfigError("invalid configuration:\n" + "\n".join(problems))
    cfg.database.uri = resolve_sqlite_uri(cfg.database.uri, base)
    cfg.encryption.store_path = str(base / cfg.encryption.store_path)
    for key in ("ca_file", "client_cert", "client_key"):
        if (value := getattr(cfg.mail, key)) is not None:
            setattr(cfg.mail, key, str(base / value))
    for key in ("key_file", "checkpoint_file"):
        setattr(cfg.audit, key, str(base / getattr(cfg.audit, key)))
    return cfg


def _moved(key: str, relative: str, base: Path) -> str | None:
    """Refuse to start afresh beside data that a working-directory-relative path found.

    Relative paths used to be relative to the working directory: a database or device
    store found there, and not next to the config file, would otherwise be silently
    replaced by an empty one (lost verifications, a new device identity).
    """
    before, after = Path.cwd() / relative, base / relative
    if before == after or not before.exists() or after.exists():
        return None
    return (
        f"  {key}: {relative!r} is relative to the config file, so it means {after}, "
        f"which does not exist; {before} (relative to the working directory) does. Move it "
        "next to the config file or give its absolute path"
    )


def sqlite_path(uri: str) -> str | None:
    """The file a ``sqlite:`` URI names, as mautrix reads it; None for other databases.

    mautrix parses the URI with yarl and opens its path: ``sqlite:///var/lib/sg.db`` is
    ``/var/lib/sg.db`` (three slashes: an empty host, then an absolute path), and
    ``sqlite:sg.db`` is the relative path ``sg.db``.
    """
    return URL(uri).path if uri.startswith("sqlite:") else None


def resolve_sqlite_uri(uri: str, base: Path) -> str:
    """``uri`` with a relative SQLite path made absolute against ``base``; others as they are."""
    path = sqlite_path(uri)
    if path is None or Path(path).is_absolute():
        return uri
    url = URL(uri)
    resolved = URL.build(path=str(base / path), query_string=url.query_string)
    return f"sqlite://{resolved}"


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


__all__ = [
    "PLACEHOLDER_TOKENS",
    "Config",
    "ConfigError",
    "InitSettingsSource",
    "load_config",
    "resolve_sqlite_uri",
    "sqlite_path",
]
