"""Builders for each capability: configuration in, wired objects out. No behaviour here.

Each function builds one capability from the config and the ports it needs; only this
package knows every part (dependencies point inward everywhere else).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import aiohttp
from mautrix.util.async_db import Database

from bot.builtin import BuiltinCommands
from bot.commands import CommandRegistry
from bot.dispatcher import CommandDispatcher
from bot.i18n import Translator
from bridge.app.retention import retention_rules
from bridge.audit.text import CATALOG as AUDIT_TEXT
from bridge.cluster.text import CATALOG as CLUSTER_TEXT
from bridge.commands.log import CommandLog
from bridge.commands.rooms import RoomStore
from bridge.commands.service import CommandService
from bridge.commands.text import CATALOG as COMMANDS_TEXT
from bridge.config import Config, ConfigError
from bridge.core.errors import TransientError
from bridge.core.ports import AuditPort
from bridge.e2ee.commands import UndecryptableNotifier
from bridge.e2ee.device import BotDevice, DeviceAllowed, DeviceStoreDb
from bridge.e2ee.text import CATALOG as E2EE_TEXT
from bridge.gate.enforce import Enforcer
from bridge.gate.policy import NetworkPolicy
from bridge.gate.reconcile import Reconciler
from bridge.gate.text import CATALOG as GATE_TEXT
from bridge.homeserver_check import CATALOG as HOMESERVER_CHECK_TEXT
from bridge.identity.bind import Binder
from bridge.identity.imports import ImportWatch
from bridge.identity.model import DirectoryLookup
from bridge.identity.psc import PscVerifier
from bridge.identity.reverify import Reverifier
from bridge.identity.sources.extract import ExtractDirectory
from bridge.identity.sources.fhir import FhirDirectory
from bridge.identity.sources.psc import psc_idnps
from bridge.identity.store import VerificationStore
from bridge.identity.text import CATALOG as IDENTITY_TEXT
from bridge.mail.text import CATALOG as MAIL_TEXT
from bridge.matrix.client import MatrixClient
from bridge.ops.metrics import Metrics
from bridge.ops.scheduler import Claims, Job, Scheduler
from bridge.ops.status import Status
from bridge.ops.text import CATALOG as OPS_TEXT
from bridge.report.text import CATALOG as REPORT_TEXT
from bridge.retention.rooms_text import CATALOG as RETENTION_ROOMS_TEXT
from bridge.retention.text import CATALOG as RETENTION_TEXT
from bridge.spine.queue import EventQueueStore
from bridge.spine.text import CATALOG as SPINE_TEXT

TEXT_CATALOGS = (
    COMMANDS_TEXT,
    SPINE_TEXT,
    GATE_TEXT,
    IDENTITY_TEXT,
    E2EE_TEXT,
    MAIL_TEXT,
    RETENTION_TEXT,
    RETENTION_ROOMS_TEXT,
    REPORT_TEXT,
    AUDIT_TEXT,
    HOMESERVER_CHECK_TEXT,
    CLUSTER_TEXT,
    OPS_TEXT,
)
"""Every capability's texts; with the framework's own, the one catalog (see the test)."""


def build_translator(*, strict: bool = False) -> Translator:
    """The one text catalog: the command framework's texts plus every capability's."""
    translator = Translator(strict=strict)
    for catalog in TEXT_CATALOGS:
        translator = translator.merged(catalog)
    return translator


def enforcer_mxid(config: Config) -> str:
    """The enforcement user: in the appservice's namespace, next to the bot."""
    return f"@{config.appservice.enforcer_username}:{config.homeserver.domain}"


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
        state_rules=retention_rules(config.retention),
    )


def build_directory(config: Config, db: Database) -> DirectoryLookup:
    d = config.directory
    if d.source == "fhir":
        if d.fhir_api_key is None:
            raise ConfigError("directory.fhir_api_key is required when directory.source is fhir")
        return FhirDirectory(
            d.fhir_base_url,
            d.fhir_api_key.get_secret_value(),
            timeout_s=d.timeout_seconds,
            retries=d.retries,
            cache_ttl_s=d.cache_ttl_seconds,
        )
    return ExtractDirectory(db)


def build_psc(
    config: Config, session: aiohttp.ClientSession, binder: Binder, store: VerificationStore
) -> PscVerifier | None:
    """Pro Santé Connect zero-touch verification, when its identity provider is set up."""
    d = config.directory
    if not d.psc_idp_id or d.homeserver_admin_token is None:
        return None
    token, idp, homeserver = (
        d.homeserver_admin_token.get_secret_value(),
        d.psc_idp_id,
        config.homeserver.address,
    )

    async def read(user_id: str) -> str | None:
        return await psc_idnps(session, homeserver, token, user_id, idp)

    return PscVerifier(read, binder, store)


def build_device(
    config: Config,
    session: aiohttp.ClientSession,
    matrix: MatrixClient,
    rooms: RoomStore,
    translator: Translator,
    device_allowed: DeviceAllowed,
    *,
    db: Database,
    replica_id: str,
) -> BotDevice | None:
    """The bot's encrypted device; replies to encrypted rooms go through it. With
    ``encryption.store_in_database`` its store lives in the database (any replica may
    lead; docs/cluster.md)."""
    cfg = config
    if not cfg.encryption.enabled:
        return None
    store_db = (
        DeviceStoreDb(db, cfg.appservice.as_token.get_secret_value(), replica_id)
        if cfg.encryption.store_in_database
        else None
    )
    device = BotDevice(
        homeserver=cfg.homeserver.address,
        user_id=cfg.bot_mxid,
        as_token=cfg.appservice.as_token.get_secret_value(),
        session=session,
        store_path=Path(cfg.encryption.store_path),
        display_name=cfg.encryption.device_display_name,
        key_wait_seconds=cfg.encryption.key_wait_seconds,
        give_up_seconds=cfg.encryption.give_up_seconds,
        sync_timeout_ms=cfg.encryption.sync_timeout_ms,
        verify_ssl=cfg.homeserver.verify_ssl,
        device_allowed=device_allowed,
        on_undecryptable=UndecryptableNotifier(translator, rooms, matrix, cfg.bot.language),
        store_db=store_db,
    )
    matrix.encryptor = device
    return device


def build_command_service(
    config: Config,
    translator: Translator,
    handlers: tuple[object, ...],
    *,
    status: Status,
    matrix: MatrixClient,
    rooms: RoomStore,
    audit: AuditPort,
    command_log: CommandLog,
) -> CommandService:
    """`!sg` commands: the framework's built-ins plus each capability's handler objects."""
    cfg = config.bot
    registry = CommandRegistry.from_handlers(BuiltinCommands(), *handlers)
    dispatcher = CommandDispatcher(
        registry,
        translator,
        prefix=cfg.prefix,
        admins=cfg.admins,
        default_language=cfg.language,
        passthrough=(TransientError,),
    )
    return CommandService(
        dispatcher=dispatcher,
        services=status,
        matrix=matrix,
        rooms=rooms,
        audit=audit,
        command_log=command_log,
    )


def build_scheduler(
    config: Config,
    metrics: Metrics,
    db: Database,
    queue: EventQueueStore,
    reverifier: Reverifier,
    enforcer: Enforcer,
    reconciler: Reconciler,
    *,
    bot_ready: asyncio.Event,
    claims: Claims | None = None,
    extra_jobs: Sequence[Job] = (),
) -> Scheduler:
    """The periodic jobs, by name (their runs and failures are in the metrics); runs
    of the long-period ones are claimed in the database (once across replicas)."""
    scheduler = Scheduler(metrics, claims)
    keep_ms = config.dispatch.keep_done_seconds * 1000
    imports = ImportWatch(db, lambda: scheduler.trigger("reverify"))

    async def checkpoint() -> None:
        await queue.checkpoint()

    async def watch_imports() -> None:
        await imports.poll()

    async def prune() -> None:
        await queue.prune_done(keep_ms)

    async def reconcile() -> None:
        await reconciler.sweep()

    for job in (
        Job("wal_checkpoint", checkpoint, interval_seconds=1),
        Job("import_watch", watch_imports, interval_seconds=10, first_delay_seconds=0),
        Job("prune_done", prune, interval_seconds=60),
        # Removals: woken on every plan; otherwise when the next retry is due.
        Job(
            "enforcement",
            enforcer.run_due,
            interval_seconds=30,
            first_delay_seconds=0,
            after=bot_ready,
        ),
        # Every violation re-derived from the homeserver's members, at start and hourly.
        Job(
            "reconcile",
            reconcile,
            interval_seconds=config.gate.reconcile_minutes * 60,
            retry_seconds=60,
            first_delay_seconds=0,
            after=bot_ready,
        ),
        # Re-checks remove members, so they wait for the bot; the first runs at once.
        Job(
            "reverify",
            reverifier.scheduled,
            interval_seconds=config.gate.reverify_hours * 3600,
            retry_seconds=300,
            first_delay_seconds=0,
            after=bot_ready,
        ),
        # Capabilities' own jobs (mail), all after the bot is registered.
        *(replace(job, after=bot_ready) for job in extra_jobs),
    ):
        scheduler.add(job)
    return scheduler
