"""A throwaway, real Synapse homeserver on loopback.

Used by the pytest harness (``@pytest.mark.synapse`` tests) and by ``make demo``. It
needs the development extras (``matrix-synapse``, ``synapse-http-antispam``, and
``psycopg2`` for PostgreSQL); nothing in the production code path imports it.

The server listens on 127.0.0.1 only, never federates outbound
(``federation_domain_whitelist: []``), trusts no key server and has rate limits raised
far enough that tests never hit them. Everything it writes (configuration, signing
key, SQLite database, media, log) lives in the working directory given to it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json as json_module
import os
import re
import secrets
import signal
import socket
import string
import subprocess
import sys
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import aiohttp
import asyncpg
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "ANTISPAM_CALLBACKS",
    "AntispamModule",
    "LocalSynapse",
    "RegisteredUser",
    "SynapseError",
    "SynapseStartError",
    "create_postgres_database",
    "drop_postgres_database",
    "temporary_postgres_database",
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

_LOG_TAIL_LINES = 40
_STOP_GRACE_SECONDS = 10.0
_START_ATTEMPTS = 3  # only retried when the port was picked by us and was taken meanwhile
_HIGH_RATE: dict[str, float] = {"per_second": 10_000.0, "burst_count": 100_000.0}
_DB_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class SynapseError(RuntimeError):
    """A request to the local Synapse failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SynapseStartError(RuntimeError):
    """Synapse did not become healthy; the message carries the tail of its logs."""


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


@dataclass(frozen=True)
class RegisteredUser:
    """A user created on the local Synapse, with a logged-in device."""

    user_id: str
    access_token: str = field(repr=False)
    device_id: str
    password: str = field(repr=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``: mappings recursively, the rest replaced."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def _generate_signing_key() -> str:
    """A Synapse signing key file line: ``ed25519 <key id> <unpadded base64 seed>``."""
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    alphabet = string.ascii_letters + string.digits
    key_id = "a_" + "".join(secrets.choice(alphabet) for _ in range(4))
    encoded = base64.b64encode(seed).decode("ascii").rstrip("=")
    return f"ed25519 {key_id} {encoded}\n"


def _postgres_args(dsn: str) -> dict[str, Any]:
    """psycopg2 connection arguments for a ``postgres://`` DSN."""
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


def _tail(path: Path, lines: int) -> list[str]:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            return handle.read().splitlines()[-lines:]
    except FileNotFoundError:
        return []


def _kill_process_group(pgid: int) -> None:
    """Last-resort cleanup (garbage collection or interpreter exit without stop())."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class LocalSynapse:
    """One Synapse process, configured for tests and demos, in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        server_name: str = "santeguard.test",
        port: int | None = None,
        appservice_registrations: Sequence[Path] = (),
        antispam: AntispamModule | None = None,
        postgres_dsn: str | None = None,
        encryption_by_default: bool = False,
        oidc_providers: Sequence[Mapping[str, Any]] = (),
        extra_config: Mapping[str, Any] | None = None,
        extra_modules: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.server_name = server_name
        self._port_is_ours = port is None
        self.port = port if port is not None else _free_port()
        self.appservice_registrations = tuple(Path(p).resolve() for p in appservice_registrations)
        self.antispam = antispam
        self.postgres_dsn = postgres_dsn
        self.encryption_by_default = encryption_by_default
        self.oidc_providers = tuple(dict(p) for p in oidc_providers)
        self.extra_config: Mapping[str, Any] = dict(extra_config or {})
        self.extra_modules = tuple(dict(m) for m in extra_modules)
        self.registration_shared_secret = secrets.token_urlsafe(32)
        self._macaroon_secret_key = secrets.token_urlsafe(32)
        self._form_secret = secrets.token_urlsafe(32)
        self._process: asyncio.subprocess.Process | None = None
        self._finalizer: weakref.finalize[[int], LocalSynapse] | None = None
        self._admin: RegisteredUser | None = None
        self._admin_lock = asyncio.Lock()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.pid is not None else "stopped"
        return f"<LocalSynapse {self.server_name} at {self.base_url} {state}>"

    # -- paths and addresses -------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "homeserver.yaml"

    @property
    def log_config_path(self) -> Path:
        return self.workdir / "log_config.yaml"

    @property
    def signing_key_path(self) -> Path:
        return self.workdir / f"{self.server_name}.signing.key"

    @property
    def log_path(self) -> Path:
        return self.workdir / "homeserver.log"

    @property
    def console_log_path(self) -> Path:
        """stdout/stderr of the process: errors raised before logging is set up."""
        return self.workdir / "console.log"

    @property
    def pid(self) -> int | None:
        """Process id (also the process group id) while running, else None."""
        proc = self._process
        if proc is None or proc.returncode is not None:
            return None
        return proc.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    # -- configuration -------------------------------------------------------------

    def _database_config(self) -> dict[str, Any]:
        if self.postgres_dsn is None:
            return {
                "name": "sqlite3",
                "args": {"database": str(self.workdir / "homeserver.db")},
            }
        return {
            "name": "psycopg2",
            "args": {**_postgres_args(self.postgres_dsn), "cp_min": 1, "cp_max": 5},
        }

    def build_config(self) -> dict[str, Any]:
        """The homeserver.yaml content (``extra_config`` deep-merged last)."""
        rate = dict(_HIGH_RATE)
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "public_baseurl": self.base_url + "/",
            "pid_file": str(self.workdir / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": self._database_config(),
            "log_config": str(self.log_config_path),
            "media_store_path": str(self.workdir / "media_store"),
            "signing_key_path": str(self.signing_key_path),
            "report_stats": False,
            "enable_metrics": False,
            "enable_registration": False,
            "bcrypt_rounds": 4,  # password hashing in ms, not ~0.3 s per register/login
            "registration_shared_secret": self.registration_shared_secret,
            "macaroon_secret_key": self._macaroon_secret_key,
            "form_secret": self._form_secret,
            # No outbound network: no key servers, no federation destinations, no previews.
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "allow_profile_lookup_over_federation": False,
            "url_preview_enabled": False,
            "app_service_config_files": [str(p) for p in self.appservice_registrations],
            "experimental_features": {
                "msc2409_to_device_messages_enabled": True,
                "msc3202_transaction_extensions": True,
            },
            "encryption_enabled_by_default_for_room_type": (
                "all" if self.encryption_by_default else "off"
            ),
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
        modules = [self.antispam.module_config()] if self.antispam is not None else []
        modules += [dict(m) for m in self.extra_modules]
        if modules:
            config["modules"] = modules
        if self.oidc_providers:
            config["oidc_providers"] = [dict(p) for p in self.oidc_providers]
        return _deep_merge(config, self.extra_config)

    def _log_config(self) -> dict[str, Any]:
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
                    "filename": str(self.log_path),
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

    def _write_files(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "media_store").mkdir(exist_ok=True)
        if not self.signing_key_path.exists():
            _write_private(self.signing_key_path, _generate_signing_key())
        _write_private(self.log_config_path, yaml.safe_dump(self._log_config(), sort_keys=False))
        _write_private(self.config_path, yaml.safe_dump(self.build_config(), sort_keys=False))

    def _redact(self, text: str) -> str:
        for secret in (
            self.registration_shared_secret,
            self._macaroon_secret_key,
            self._form_secret,
            self.antispam.token if self.antispam else "",
            self._admin.access_token if self._admin else "",
        ):
            if secret:
                text = text.replace(secret, "<redacted>")
        return text

    def _log_tail(self) -> str:
        sections = []
        for path in (self.console_log_path, self.log_path):
            lines = _tail(path, _LOG_TAIL_LINES)
            if lines:
                sections.append(f"--- last {len(lines)} lines of {path} ---\n" + "\n".join(lines))
        return self._redact("\n".join(sections) or "(no log output)")

    # -- lifecycle -----------------------------------------------------------------

    async def start(self, timeout: float = 60) -> None:
        """Write the configuration, spawn Synapse, and wait until /health says OK."""
        if self.running:
            return
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                await self._start_once(timeout)
                return
            except SynapseStartError as e:
                port_taken = "Address already in use" in str(e)
                if not (self._port_is_ours and port_taken and attempt < _START_ATTEMPTS):
                    raise
                self.port = _free_port()

    async def _start_once(self, wait_seconds: float) -> None:
        self._write_files()
        with self.console_log_path.open("ab") as console:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "synapse.app.homeserver",
                "-c",
                str(self.config_path),
                cwd=str(self.workdir),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group, so stop() can kill it whole
            )
        proc = self._process
        self._finalizer = weakref.finalize(self, _kill_process_group, proc.pid)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        url = f"{self.base_url}/health"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                if proc.returncode is not None:
                    await self._terminate()
                    raise SynapseStartError(
                        f"Synapse exited with status {proc.returncode} during start-up\n"
                        + self._log_tail()
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as resp:
                        if resp.status == 200 and (await resp.text()).strip() == "OK":
                            return
                if loop.time() >= deadline:
                    await self._terminate()
                    raise SynapseStartError(
                        f"Synapse not healthy after {wait_seconds:.0f}s\n" + self._log_tail()
                    )
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after a grace period. Idempotent."""
        await self._terminate()

    async def _terminate(self, grace: float = _STOP_GRACE_SECONDS) -> None:
        proc = self._process
        if proc is None:
            return
        pgid = proc.pid
        try:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), grace)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pgid, signal.SIGKILL)
                    await proc.wait()
            # Anything else left in the group (Synapse itself forks nothing, but be sure).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        finally:
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None
            self._process = None

    async def restart(self, timeout: float = 60) -> None:
        """Stop and start again on the same port, data and signing key."""
        await self.stop()
        await self.start(timeout)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- HTTP helpers --------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        expect: int | None = 200,
    ) -> tuple[int, Any]:
        """Send one client-server/admin API request; return (status, decoded JSON body).

        With ``expect`` set, any other status raises :class:`SynapseError`.
        """
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        timeout = aiohttp.ClientTimeout(total=30)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, self.base_url + path, headers=headers, json=json) as resp,
        ):
            raw = await resp.text()
            body: Any
            try:
                body = json_module.loads(raw) if raw else None
            except ValueError:
                body = raw
            if expect is not None and resp.status != expect:
                errcode = body.get("errcode") if isinstance(body, dict) else None
                error = body.get("error") if isinstance(body, dict) else None
                raise SynapseError(
                    f"{method} {path.split('?')[0]} -> {resp.status} {errcode}: {error}",
                    status=resp.status,
                )
            return resp.status, body

    async def register_user(
        self,
        localpart: str,
        password: str | None = None,
        *,
        admin: bool = False,
        displayname: str | None = None,
    ) -> RegisteredUser:
        """Create a user with the shared-secret admin API and return its first device."""
        password = password if password is not None else secrets.token_urlsafe(16)
        _, nonce_body = await self.request("GET", "/_synapse/admin/v1/register")
        nonce: str = nonce_body["nonce"]
        mac = hmac.new(self.registration_shared_secret.encode(), digestmod=hashlib.sha1)
        for part in (nonce, localpart, password):
            mac.update(part.encode("utf-8"))
            mac.update(b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        payload: dict[str, Any] = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        if displayname is not None:
            payload["displayname"] = displayname
        _, body = await self.request("POST", "/_synapse/admin/v1/register", json=payload)
        return RegisteredUser(
            user_id=body["user_id"],
            access_token=body["access_token"],
            device_id=body["device_id"],
            password=password,
        )

    async def register_appservice_user(self, as_token: str, localpart: str) -> str:
        """Register an appservice's user (e.g. its ``sender_localpart``); return its ID.

        Synapse rejects the appservice's token until its sender user exists. Registering
        an already-existing user is treated as success.
        """
        status, body = await self.request(
            "POST",
            "/_matrix/client/v3/register",
            token=as_token,
            json={
                "type": "m.login.application_service",
                "username": localpart,
                "inhibit_login": True,
            },
            expect=None,
        )
        errcode = body.get("errcode") if isinstance(body, dict) else None
        if status == 200:
            user_id: str = body["user_id"]
            return user_id
        if status == 400 and errcode == "M_USER_IN_USE":
            return self.user_id(localpart)
        raise SynapseError(f"appservice registration -> {status} {errcode}", status=status)

    async def admin_token(self) -> str:
        """Access token of an admin user, created on first use for this instance."""
        async with self._admin_lock:
            if self._admin is None:
                localpart = f"sg_admin_{secrets.token_hex(4)}"
                self._admin = await self.register_user(localpart, admin=True)
            return self._admin.access_token


def _write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (it may hold secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


# -- PostgreSQL helpers --------------------------------------------------------------


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def create_postgres_database(admin_dsn: str, name: str | None = None) -> str:
    """Create a database Synapse accepts (UTF8, C collation) and return its DSN.

    ``admin_dsn`` points at any database of the server, with a role allowed to
    create databases.
    """
    name = name or f"sg_synapse_{secrets.token_hex(4)}"
    if not _DB_NAME_RE.match(name):
        raise ValueError(f"invalid database name: {name!r}")
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(
            f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0 "
            "LC_COLLATE 'C' LC_CTYPE 'C'"
        )
    finally:
        await conn.close()
    return _with_database(admin_dsn, name)


async def drop_postgres_database(admin_dsn: str, name_or_dsn: str) -> None:
    """Drop a database made by :func:`create_postgres_database` (forcing sessions out)."""
    name = unquote(urlsplit(name_or_dsn).path.lstrip("/")) if "://" in name_or_dsn else name_or_dsn
    if not _DB_NAME_RE.match(name):
        raise ValueError(f"invalid database name: {name!r}")
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def temporary_postgres_database(admin_dsn: str) -> AsyncIterator[str]:
    """A fresh Synapse-compatible database for the duration of the block; yields its DSN."""
    dsn = await create_postgres_database(admin_dsn)
    try:
        yield dsn
    finally:
        await drop_postgres_database(admin_dsn, dsn)
