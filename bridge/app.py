"""The entry point's wiring: the only place that knows every part.

Start order: database (upgraded) → HTTP server (so the homeserver can deliver) →
dispatcher (drains whatever was stored before a crash) → bot registration, retried in
the background while the homeserver is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from mautrix.util.async_db import Database

from bot.builtin import BuiltinCommands
from bot.commands import CommandRegistry
from bot.dispatcher import CommandDispatcher
from bot.i18n import Lang, Translator
from bridge import __version__
from bridge.audit.log import AuditLog
from bridge.commands.log import CommandLog
from bridge.commands.rooms import RoomStore
from bridge.commands.service import CommandService
from bridge.config import Config, ConfigError
from bridge.db import build_upgrade_table
from bridge.e2ee.commands import EncryptionCommands, UndecryptableNotifier
from bridge.e2ee.device import BotDevice
from bridge.gate.commands import CATALOG as GATE_CATALOG
from bridge.gate.commands import GateCommands
from bridge.gate.decision import AllowAllGate, Gate
from bridge.gate.gatekeeper import Gatekeeper
from bridge.gate.policy import NetworkPolicy
from bridge.gate.store import GateStore
from bridge.identity.model import DirectoryLookup
from bridge.identity.psc import PscVerifier
from bridge.identity.reverify import Reverifier
from bridge.identity.sources.extract import ExtractDirectory
from bridge.identity.sources.fhir import FhirDirectory
from bridge.identity.sources.psc import psc_idnps
from bridge.matrix.client import MatrixClient
from bridge.ops.metrics import Metrics
from bridge.spine.dispatch import Dispatcher
from bridge.spine.http import AppserviceServer
from bridge.spine.queue import EventQueueStore
from bridge.spine.routes import EventRouter, MessageHandler

log = logging.getLogger("santeguard")


def network_policy(config: Config) -> NetworkPolicy:
    """The gate's network rules; the bot and its appservice users are always exempt."""
    domain = re.escape(config.homeserver.domain)
    bot = re.escape(config.appservice.bot_username)
    return NetworkPolicy(
        home_server=config.homeserver.domain,
        allowed_servers=frozenset(config.gate.allowed_servers),
        exempt_users=frozenset(config.gate.exempt_users),
        exempt_user_pattern=re.compile(f"@{bot}(_.+)?:{domain}"),
        protect_by_default=config.gate.protect_by_default,
        require_encryption=config.gate.require_encryption,
        unencrypted_room_types=frozenset(config.gate.unencrypted_room_types),
        admins=frozenset(config.bot.admins),
    )


def sqlite_db_args(config: Config) -> dict[str, Any]:
    if config.database.uri.startswith("sqlite"):
        return {
            "init_commands": [
                "PRAGMA journal_mode = WAL",
                f"PRAGMA synchronous = {config.database.sqlite_synchronous.upper()}",
            ]
        }
    return {"min_size": config.database.min_size, "max_size": config.database.max_size}


class SanteGuard:
    """One running SantéGuard instance."""

    def __init__(self, config: Config, *, gate: Gate | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.started_at = time.monotonic()
        self.db = Database.create(
            config.database.uri,
            upgrade_table=build_upgrade_table(),
            db_args=sqlite_db_args(config),
            log=logging.getLogger("santeguard.db"),
        )
        self.queue = EventQueueStore(self.db, sqlite_synchronous=config.database.sqlite_synchronous)
        self.rooms = RoomStore(self.db)
        self.audit = AuditLog(self.db)
        self.gate_store = GateStore(self.db)
        self.directory: DirectoryLookup = self._build_directory()
        self._gate_override = gate
        self.gate: Gate = gate or AllowAllGate()  # replaced by the Gatekeeper at start
        self.gatekeeper: Gatekeeper | None = None
        self._session: aiohttp.ClientSession | None = None
        self.matrix: MatrixClient | None = None
        self.crypto: BotDevice | None = None
        self.dispatcher: Dispatcher | None = None
        self._runner: web.AppRunner | None = None
        self._bot_task: asyncio.Task[None] | None = None
        self._housekeeping_task: asyncio.Task[None] | None = None
        self._reverify_task: asyncio.Task[None] | None = None
        self.reverifier: Reverifier | None = None
        self._current_import: int | None = None
        self.bot_ready = asyncio.Event()
        self._message_handler: MessageHandler | None = None

    def set_message_handler(self, handler: MessageHandler) -> None:
        """Replace the bot's command handling (tests use this to observe dispatch)."""
        self._message_handler = handler

    # -- BotServices: what built-in commands report ----------------------------------

    @property
    def version(self) -> str:
        return __version__

    def uptime_seconds(self) -> float:
        return time.monotonic() - self.started_at

    async def queue_depth(self) -> int:
        return await self.queue.depth()

    async def rooms_watched(self) -> int:
        return await self.rooms.count_joined()

    async def set_room_language(self, room_id: str, lang: Lang) -> None:
        await self.rooms.set_language(room_id, lang)
        await self.audit.record("bot", "room.language", room_id=room_id, details={"language": lang})

    async def _device_allowed(self, user_id: str, room_id: str) -> bool:
        """Room keys go only to members the gate admits in that room (verified, allowed
        server and profession): a member who got past the gate reads nothing new."""
        if self.gatekeeper is None:
            return False
        return self.gatekeeper.member_decision(user_id, room_id).allow

    def _build_directory(self) -> DirectoryLookup:
        d = self.config.directory
        if d.source == "fhir":
            if d.fhir_api_key is None:
                raise ConfigError(
                    "directory.fhir_api_key is required when directory.source is fhir"
                )
            return FhirDirectory(
                d.fhir_base_url,
                d.fhir_api_key.get_secret_value(),
                timeout_s=d.timeout_seconds,
                retries=d.retries,
                cache_ttl_s=d.cache_ttl_seconds,
            )
        return ExtractDirectory(self.db)

    def _build_psc(self) -> PscVerifier | None:
        d = self.config.directory
        if not d.psc_idp_id or d.homeserver_admin_token is None or self._session is None:
            return None
        session, token, idp = (
            self._session,
            d.homeserver_admin_token.get_secret_value(),
            d.psc_idp_id,
        )
        homeserver = self.config.homeserver.address

        async def read(user_id: str) -> str | None:
            return await psc_idnps(session, homeserver, token, user_id, idp)

        return PscVerifier(
            read,
            self.directory,
            self.gate_store,
            self.audit,
            verification_days=self.config.gate.verification_days,
        )

    def _build_commands(self, matrix: MatrixClient) -> CommandService:
        cfg = self.config.bot
        assert self.gatekeeper is not None
        gate_commands = GateCommands(
            store=self.gate_store,
            enforcer=self.gatekeeper,
            directory=self.directory,
            profiles=matrix,
            audit=self.audit,
            admins=frozenset(cfg.admins),
            verification_days=self.config.gate.verification_days,
        )
        registry = CommandRegistry.from_handlers(
            BuiltinCommands(), EncryptionCommands(self.crypto), gate_commands
        )
        dispatcher = CommandDispatcher(
            registry,
            Translator().merged(GATE_CATALOG),
            prefix=cfg.prefix,
            admins=cfg.admins,
            default_language=cfg.language,
        )
        return CommandService(
            dispatcher=dispatcher,
            services=self,
            matrix=matrix,
            rooms=self.rooms,
            audit=self.audit,
            command_log=CommandLog(self.db),
        )

    def _build_crypto(self, matrix: MatrixClient) -> BotDevice:
        """The bot's encrypted device; replies to encrypted rooms go through it."""
        cfg = self.config
        assert self._session is not None
        device = BotDevice(
            homeserver=cfg.homeserver.address,
            user_id=cfg.bot_mxid,
            as_token=cfg.appservice.as_token.get_secret_value(),
            session=self._session,
            store_path=Path(cfg.encryption.store_path),
            display_name=cfg.encryption.device_display_name,
            key_wait_seconds=cfg.encryption.key_wait_seconds,
            give_up_seconds=cfg.encryption.give_up_seconds,
            sync_timeout_ms=cfg.encryption.sync_timeout_ms,
            verify_ssl=cfg.homeserver.verify_ssl,
            device_allowed=self._device_allowed,
            on_undecryptable=UndecryptableNotifier(
                Translator(), self.rooms, matrix, cfg.bot.language
            ),
        )
        matrix.encryptor = device
        return device

    async def readiness(self) -> dict[str, bool]:
        db_ok = True
        try:
            await self.db.fetchval("SELECT 1")
        except Exception:
            db_ok = False
        hs_ok = self.matrix is not None and await self.matrix.homeserver_reachable()
        return {"database": db_ok, "homeserver": hs_ok}

    async def _user_query(self, user_id: str) -> bool:
        if self.matrix is None or user_id != self.config.bot_mxid:
            return False
        await self.matrix.ensure_bot()
        return True

    async def start(self) -> None:
        cfg = self.config
        await self.db.start()
        await self.queue.open()
        self.audit.use_writer(self.queue.writer)
        await self.gate_store.load()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=True if cfg.homeserver.verify_ssl else False),
            headers={"User-Agent": f"SanteGuard/{__version__}"},
        )
        self.matrix = MatrixClient(
            cfg.homeserver.address,
            cfg.bot_mxid,
            cfg.appservice.as_token.get_secret_value(),
            self._session,
            bot_displayname=cfg.appservice.bot_displayname,
        )
        self.gatekeeper = Gatekeeper(
            self.gate_store,
            network_policy(cfg),
            self.matrix,
            self.audit,
            language=cfg.bot.language,
            encrypted_by_default=cfg.gate.homeserver_encrypts_by_default,
            admin_room=cfg.gate.admin_room,
            psc=self._build_psc(),
        )
        if self._gate_override is None:
            self.gate = self.gatekeeper
        if cfg.encryption.enabled:
            self.crypto = self._build_crypto(self.matrix)
        on_message = self._message_handler or self._build_commands(self.matrix).on_message
        router = EventRouter(
            self.matrix,
            self.rooms,
            self.audit,
            on_message,
            backstop=self.gatekeeper,
            crypto=self.crypto,
        )
        self.dispatcher = Dispatcher(
            self.queue,
            router.handle,
            self.metrics,
            max_concurrent_rooms=cfg.dispatch.max_concurrent_rooms,
            max_attempts=cfg.dispatch.max_attempts,
            retry_base_seconds=cfg.dispatch.retry_base_seconds,
        )
        antispam_token = cfg.antispam.token.get_secret_value() if cfg.antispam.token else None
        server = AppserviceServer(
            hs_token=cfg.appservice.hs_token.get_secret_value(),
            antispam_token=antispam_token,
            antispam_path=cfg.antispam.path,
            max_body_bytes=cfg.appservice.max_body_bytes,
            metrics=self.metrics,
            store_txn=self.queue.store_transaction,
            on_stored=self.dispatcher.submit,
            gate=self.gate,
            readiness=self.readiness,
            user_query=self._user_query,
        )
        self._runner = web.AppRunner(server.build_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.appservice.hostname, cfg.appservice.port)
        await site.start()
        log.info(
            "SantéGuard %s listening on %s:%d",
            __version__,
            cfg.appservice.hostname,
            cfg.appservice.port,
        )
        if antispam_token is None:
            log.warning("antispam.token is not set: the synchronous gate refuses every callback")
        await self.dispatcher.start()
        self._bot_task = asyncio.create_task(self._ensure_bot_forever(), name="santeguard-bot")
        self._housekeeping_task = asyncio.create_task(self._housekeeping(), name="santeguard-hk")
        self.reverifier = Reverifier(
            self.gate_store,
            self.directory,
            self.gatekeeper,
            self.audit,
            self.gatekeeper.notify_admins,
            verification_days=cfg.gate.verification_days,
            period_seconds=cfg.gate.reverify_hours * 3600,
        )
        self._reverify_task = asyncio.create_task(
            self._reverify_after_bot(), name="santeguard-reverify"
        )

    async def _reverify_after_bot(self) -> None:
        """Re-checks need the bot (to remove members), so they start once it is ready."""
        assert self.reverifier is not None
        await self.bot_ready.wait()
        await self.reverifier.run_forever()

    async def _ensure_bot_forever(self) -> None:
        assert self.matrix is not None
        delay = 0.5
        while True:
            try:
                await self.matrix.ensure_bot()
                if self.crypto is not None:
                    await self.crypto.start()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("Homeserver not ready for bot registration (%s); retrying", e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
                continue
            self.bot_ready.set()
            log.info("Bot %s registered", self.config.bot_mxid)
            return

    async def _check_new_import(self) -> None:
        """A new directory extract import (from the CLI) triggers a re-verification."""
        current = await self.db.fetchval("SELECT id FROM directory_import WHERE is_current")
        if current is None:
            return
        if self._current_import is not None and current != self._current_import:
            log.info("New directory import %s: re-verifying every practitioner", current)
            if self.reverifier is not None:
                self.reverifier.trigger()
        self._current_import = int(current)

    async def _housekeeping(self) -> None:
        """WAL checkpoints every second; new imports every 10 s; pruning every minute."""
        ticks = 0
        while True:
            await asyncio.sleep(1)
            ticks += 1
            try:
                await self.queue.checkpoint()
                if ticks % 10 == 0:
                    await self._check_new_import()
                if ticks % 60 == 0:
                    pruned = await self.queue.prune_done(
                        self.config.dispatch.keep_done_seconds * 1000
                    )
                    if pruned:
                        log.debug("Pruned %d handled transactions", pruned)
            except Exception:
                log.exception("Housekeeping failed; will try again")

    async def stop(self) -> None:
        for task in (self._bot_task, self._housekeeping_task, self._reverify_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._runner is not None:
            await self._runner.cleanup()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        if self.crypto is not None:
            await self.crypto.stop()
        if isinstance(self.directory, FhirDirectory):
            await self.directory.close()
        if self._session is not None:
            await self._session.close()
        await self.queue.close()
        await self.db.stop()

    async def run_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()
