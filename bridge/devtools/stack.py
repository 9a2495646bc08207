"""A throwaway Synapse and SantéGuard wired together on loopback, for tests and the demo.

SantéGuard starts first (the homeserver's gate module calls it synchronously), then
Synapse with SantéGuard's registration and the HTTP antispam module; the bot is ready
once its user is registered.

With ``fault_proxy=True``, SantéGuard reaches Synapse through a
:class:`~bridge.devtools.faultproxy.FaultProxy` (``stack.proxy``), so a test can make
the homeserver fail SantéGuard's requests; Synapse still calls SantéGuard directly.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from bridge.app import SanteGuard
from bridge.config import Config
from bridge.core.antispam import GatePort
from bridge.devtools.client import SimpleClient
from bridge.devtools.faultproxy import FaultProxy
from bridge.devtools.secretlog import register_config
from bridge.devtools.synapse import AntispamModule, LocalSynapse, RegisteredUser
from bridge.devtools.synapse.config import deep_merge
from bridge.devtools.testconfig import free_port
from bridge.identity.model import Practitioner, Verification
from bridge.registration import build_registration, generate_tokens
from bridge.retention.config import RetentionConfig


def synapse_retention(retention: RetentionConfig) -> dict[str, Any]:
    """Synapse's ``retention:`` block for SantéGuard's bounds (milliseconds)."""
    bounds = retention.bounds
    return {
        "enabled": True,
        "allowed_lifetime_min": bounds.min_ms,
        "allowed_lifetime_max": bounds.max_ms,
        # Rooms without a policy of their own (SantéGuard gives protected rooms one).
        "default_policy": {"max_lifetime": bounds.default_max_ms},
        "purge_jobs": [{"interval": retention.purge_interval_ms}],
    }


ANTISPAM_PATH = "/_santeguard/antispam"


class DevStack:
    def __init__(
        self,
        workdir: Path,
        *,
        db_uri: str,
        server_name: str = "santeguard.test",
        admins: Sequence[str] = (),
        gate: GatePort | None = None,
        encryption_by_default: bool = False,
        config_overrides: Mapping[str, Mapping[str, Any]] | None = None,
        antispam_callbacks: Sequence[str] = (
            "user_may_invite",
            "user_may_join_room",
            "check_event_for_spam",
        ),
        fault_proxy: bool = False,
        homeserver_config: Mapping[str, Any] | None = None,
        enforcer_admin: bool = True,
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.server_name = server_name
        self.as_port = free_port()
        self.as_token, self.hs_token = generate_tokens()
        self.gate_token = secrets.token_urlsafe(32)
        self.registration_path = workdir / "registration.yaml"
        registration = build_registration(
            service_id="santeguard",
            url=f"http://127.0.0.1:{self.as_port}",
            domain=server_name,
            bot_username="santeguard",
            as_token=self.as_token,
            hs_token=self.hs_token,
        )
        self.sender_localpart = str(registration["sender_localpart"])
        retention = RetentionConfig(**dict((config_overrides or {}).get("retention", {})))
        self.registration_path.write_text(yaml.safe_dump(registration), encoding="utf-8")
        self.registration_path.chmod(0o600)
        self.synapse = LocalSynapse(
            workdir / "synapse",
            server_name=server_name,
            appservice_registrations=[self.registration_path],
            antispam=AntispamModule(
                base_url=f"http://127.0.0.1:{self.as_port}{ANTISPAM_PATH}",
                token=self.gate_token,
                # Room creation goes through SanteGuardRoomRules, which passes the config.
                callbacks=tuple(antispam_callbacks),
            ),
            encryption_by_default=encryption_by_default,
            # Synapse's retention matches SantéGuard's bounds (check-homeserver wants it).
            extra_config=deep_merge(
                {"retention": synapse_retention(retention)}, homeserver_config or {}
            ),
            extra_modules=[
                {
                    "module": "bridge.gate.synapse_module.SanteGuardRoomRules",
                    "config": {
                        "base_url": f"http://127.0.0.1:{self.as_port}{ANTISPAM_PATH}",
                        "authorization": self.gate_token,
                        "enforcer_user_id": f"@santeguard_control:{server_name}",
                        "retention_max_lifetime_ms": retention.bounds.default_max_ms,
                    },
                }
            ],
        )
        self._proxy = FaultProxy(self.synapse.base_url) if fault_proxy else None
        self._db_uri = db_uri
        self._admins = list(admins)
        self._gate = gate
        self._overrides = config_overrides or {}
        self.santeguard: SanteGuard | None = None
        self._admin_user: RegisteredUser | None = None
        self._admin_token: str | None = None
        self._enforcer_admin = enforcer_admin

    @property
    def proxy(self) -> FaultProxy:
        """The fault proxy between SantéGuard and Synapse (``fault_proxy=True`` only)."""
        if self._proxy is None:
            raise RuntimeError("this DevStack has no fault proxy (DevStack(fault_proxy=True))")
        return self._proxy

    @property
    def homeserver_address(self) -> str:
        """Where SantéGuard reaches Synapse: the fault proxy if there is one."""
        return self._proxy.base_url if self._proxy is not None else self.synapse.base_url

    def config(self) -> Config:
        data: dict[str, Any] = {
            "homeserver": {"address": self.homeserver_address, "domain": self.server_name},
            "appservice": {
                "address": f"http://127.0.0.1:{self.as_port}",
                "hostname": "127.0.0.1",
                "port": self.as_port,
                "as_token": self.as_token,
                "hs_token": self.hs_token,
            },
            "antispam": {"path": ANTISPAM_PATH, "token": self.gate_token},
            "directory": {"psc_idp_id": "psc", "homeserver_admin_token": self._admin_token},
            "database": {"uri": self._db_uri},
            "bot": {"admins": self._admins},
            "encryption": {"store_path": str(self.workdir / "crypto")},
            # One process at a time on a stack's database: no leader to wait out.
            "cluster": {"takeover_grace_seconds": 0},
            "audit": {
                "key_file": str(self.workdir / "santeguard-audit.key"),
                "checkpoint_file": str(self.workdir / "santeguard-audit-checkpoints.jsonl"),
            },
        }
        for section, values in self._overrides.items():
            data.setdefault(section, {}).update(values)
        cfg = Config(**data)
        register_config(cfg)  # for the test suite's log scan (tests/secretscan.py)
        return cfg

    async def start_santeguard(self) -> SanteGuard:
        self.santeguard = SanteGuard(self.config(), gate=self._gate)
        await self.santeguard.start()
        return self.santeguard

    async def start(self, timeout: float = 60) -> None:
        # Synapse first: SantéGuard gets a homeserver admin token (Pro Santé Connect
        # bindings are read through the admin API). Until SantéGuard listens, the gate
        # fails closed and transactions wait in Synapse.
        await self.synapse.start(timeout=timeout)
        self._admin_token = await self.synapse.admin_token()
        if self._proxy is not None:
            self._proxy.retarget(self.synapse.base_url)  # its port may have changed at start
            await self._proxy.start()
        await self.start_santeguard()
        await self.synapse.register_appservice_user(self.as_token, self.sender_localpart)
        assert self.santeguard is not None
        await asyncio.wait_for(self.santeguard.bot_ready.wait(), timeout)
        await asyncio.wait_for(self.reverify_settled(), timeout)
        if self._enforcer_admin:
            await self.make_enforcer_admin()

    async def reverify_settled(self) -> None:
        """Until the start-up re-verification has run (or is not due: its runs are
        claimed, docs/cluster.md). It unbinds whoever the directory does not list, so a
        practitioner bound before it ran (``practitioner``) would lose the binding."""
        sg = self.santeguard
        assert sg is not None
        while True:
            runs = sum(
                sg.metrics.registry.get_sample_value(
                    "santeguard_job_runs_total", {"job": "reverify", "outcome": outcome}
                )
                or 0
                for outcome in ("ok", "failed")
            )
            row = await sg.db.fetchrow(
                "SELECT next_due, replica FROM job_run WHERE name = 'reverify'"
            )
            # Claimed by an earlier process on this database and not due: no start run.
            earlier = row is not None and row["replica"] != sg.cluster.replica_id
            due = await sg.cluster.claims.due_in("reverify") if sg.cluster.claims else None
            if runs or (earlier and due is not None and due > 60):
                return
            await asyncio.sleep(0.05)

    async def make_enforcer_admin(self, admin: bool = True) -> None:
        """Make the enforcement user a server admin (or not), as the install guide says:
        the retention audit and inactive-room closure use the admin API as this user."""
        await self.synapse.set_admin(self.enforcer_mxid, admin)

    async def stop_santeguard(self) -> None:
        if self.santeguard is not None:
            await self.santeguard.stop()
            self.santeguard = None

    async def stop(self) -> None:
        await self.stop_santeguard()
        if self._proxy is not None:
            await self._proxy.stop()
        await self.synapse.stop()

    @property
    def enforcer_mxid(self) -> str:
        """The enforcement user (no E2EE device), which the room module puts in every room."""
        return f"@santeguard_control:{self.server_name}"

    @property
    def bot_mxid(self) -> str:
        return f"@santeguard:{self.server_name}"

    async def user(
        self, localpart: str, *, admin: bool = False, displayname: str | None = None
    ) -> tuple[RegisteredUser, SimpleClient]:
        user = await self.synapse.register_user(localpart, admin=admin, displayname=displayname)
        return user, SimpleClient(self.synapse.base_url, user.user_id, user.access_token)

    async def admin(self) -> tuple[RegisteredUser, SimpleClient]:
        """The first configured network admin (an unverified account), created once."""
        if self._admin_user is None:
            localpart = self._admins[0].split(":", 1)[0].lstrip("@")
            self._admin_user = await self.synapse.register_user(
                localpart, displayname="Admin réseau"
            )
        user = self._admin_user
        return user, SimpleClient(self.synapse.base_url, user.user_id, user.access_token)

    async def practitioner(
        self,
        localpart: str,
        practitioner: Practitioner,
        *,
        displayname: str | None = None,
        days: int = 30,
    ) -> tuple[RegisteredUser, SimpleClient]:
        """A user bound to a directory entry, as `!sg verify` would do."""
        user, client = await self.user(localpart, displayname=displayname or practitioner.full_name)
        assert self.santeguard is not None
        verification = Verification.of(
            practitioner, "manual", datetime.now(UTC), timedelta(days=days)
        )
        await self.santeguard.verifications.bind(user.user_id, verification, bound_by="devstack")
        return user, client
