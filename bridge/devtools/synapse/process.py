"""The lifecycle of one throwaway Synapse process: start, health wait, stop, restart.

Synapse runs in its own process group so that stopping it (or the garbage collector,
if the owner forgot) takes everything down; a failed start reports the tail of its
logs with the instance's secrets redacted, since those reports end up in CI output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, Unpack

import aiohttp
import yaml

from bridge.devtools.synapse import users
from bridge.devtools.synapse.config import (
    AntispamModule,
    generate_signing_key,
    homeserver_config,
    log_config,
    write_private,
)
from bridge.devtools.synapse.users import AdminAccount, RegisteredUser
from bridge.devtools.testconfig import free_port

__all__ = ["LocalSynapse", "SynapseStartError"]

_LOG_TAIL_LINES = 40
_STOP_GRACE_SECONDS = 10.0
_START_ATTEMPTS = 3  # only retried when the port was picked by us and was taken meanwhile


class SynapseStartError(RuntimeError):
    """Synapse did not become healthy; the message carries the tail of its logs."""


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
        self.port = port if port is not None else free_port()
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
        self._admin = AdminAccount()

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

    def build_config(self) -> dict[str, Any]:
        """The homeserver.yaml content (``extra_config`` deep-merged last)."""
        return homeserver_config(
            workdir=self.workdir,
            server_name=self.server_name,
            port=self.port,
            base_url=self.base_url,
            log_config_path=self.log_config_path,
            signing_key_path=self.signing_key_path,
            registration_shared_secret=self.registration_shared_secret,
            macaroon_secret_key=self._macaroon_secret_key,
            form_secret=self._form_secret,
            appservice_registrations=self.appservice_registrations,
            antispam=self.antispam,
            postgres_dsn=self.postgres_dsn,
            encryption_by_default=self.encryption_by_default,
            oidc_providers=self.oidc_providers,
            extra_modules=self.extra_modules,
            extra_config=self.extra_config,
        )

    def _write_files(self) -> None:
        """Rewritten on every start (the port may have changed); the key is kept."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "media_store").mkdir(exist_ok=True)
        if not self.signing_key_path.exists():
            write_private(self.signing_key_path, generate_signing_key())
        log_yaml = yaml.safe_dump(log_config(self.log_path), sort_keys=False)
        write_private(self.log_config_path, log_yaml)
        write_private(self.config_path, yaml.safe_dump(self.build_config(), sort_keys=False))

    def _redact(self, text: str) -> str:
        for secret in (
            self.registration_shared_secret,
            self._macaroon_secret_key,
            self._form_secret,
            self.antispam.token if self.antispam else "",
            self._admin.user.access_token if self._admin.user else "",
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
                self.port = free_port()

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

    # -- HTTP helpers (see users.py) -----------------------------------------------

    async def request(
        self, method: str, path: str, **options: Unpack[users.RequestOptions]
    ) -> tuple[int, Any]:
        """Send one client-server/admin API request; return (status, decoded JSON body).

        ``options`` as for :func:`users.request`: ``token``, ``json``, and ``expect``
        (200 unless given) — any other status raises :class:`SynapseError`.
        """
        return await users.request(self.base_url, method, path, **options)

    async def register_user(
        self,
        localpart: str,
        password: str | None = None,
        *,
        admin: bool = False,
        displayname: str | None = None,
    ) -> RegisteredUser:
        """Create a user with the shared-secret admin API and return its first device."""
        return await users.register_user(
            self.base_url,
            self.registration_shared_secret,
            localpart,
            password,
            admin=admin,
            displayname=displayname,
        )

    async def register_appservice_user(self, as_token: str, localpart: str) -> str:
        """Register an appservice's user (e.g. its ``sender_localpart``); return its ID.

        Synapse rejects the appservice's token until its sender user exists. Registering
        an already-existing user is treated as success.
        """
        return await users.register_appservice_user(
            self.base_url, self.server_name, as_token, localpart
        )

    async def admin_token(self) -> str:
        """Access token of an admin user, created on first use for this instance."""
        return await self._admin.token(lambda localpart: self.register_user(localpart, admin=True))

    async def set_admin(self, user_id: str, admin: bool = True) -> None:
        """Make an existing user (an appservice user too) a server admin, or not."""
        await self.request(
            "PUT",
            f"/_synapse/admin/v1/users/{user_id}/admin",
            token=await self.admin_token(),
            json={"admin": admin},
        )
