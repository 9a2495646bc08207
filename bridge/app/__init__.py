"""The composition root: builds every part, wires them, starts and stops them.

Start order: database (upgraded) and in-memory stores → change feed (PostgreSQL) → HTTP
server (so the homeserver can deliver; every replica stores transactions and answers the
gate) → the leader's lease. Once this replica leads (at once on SQLite): dispatcher
(drains whatever was stored before a crash) → scheduled jobs → bot registration and the
bot's device, retried in the background while the homeserver is unreachable.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from bridge import __version__
from bridge.app.cluster import build_cluster
from bridge.app.homeserver import build_homeserver_watch
from bridge.app.leadership import Leadership
from bridge.app.listen import listen
from bridge.app.mail import build_mail
from bridge.app.outages import build_outages, start_outages, watched_directory
from bridge.app.report import build_report_commands
from bridge.app.retention import build_retention
from bridge.app.seal import Seal
from bridge.app.wiring import (
    build_command_service,
    build_device,
    build_directory,
    build_psc,
    build_scheduler,
    build_translator,
    enforcer_mxid,
    network_policy,
)
from bridge.audit.log import AuditLog
from bridge.audit.sealer import AuditSealer
from bridge.cluster.fresh import FreshGate
from bridge.commands.log import CommandLog
from bridge.commands.membership import BotMembership
from bridge.commands.rooms import LanguageSetting, RoomStore
from bridge.config import Config
from bridge.core.antispam import GatePort
from bridge.core.ports import Subscriber
from bridge.db.database import open_database, start_database
from bridge.e2ee.commands import EncryptionCommands
from bridge.e2ee.forced import ForcedEncryption
from bridge.e2ee.hooks import EncryptedEvents
from bridge.gate.backstop import Backstop
from bridge.gate.commands import RoomCommands
from bridge.gate.decide import Gatekeeper
from bridge.gate.enforce import EnforcementStore, Enforcer
from bridge.gate.presence import EnforcerPresence
from bridge.gate.reconcile import Reconciler
from bridge.gate.store import RoomPolicyStore
from bridge.identity.bind import Binder
from bridge.identity.commands import IdentityCommands
from bridge.identity.reverify import Reverifier
from bridge.identity.sources.fhir import FhirDirectory
from bridge.identity.store import VerificationStore
from bridge.matrix.bot_account import BotAccount
from bridge.matrix.client import MatrixClient
from bridge.ops.alerts import AdminAlerts
from bridge.ops.health import Readiness
from bridge.ops.metrics import Metrics
from bridge.ops.status import Status
from bridge.spine.dispatch import Dispatcher
from bridge.spine.http import AppserviceServer
from bridge.spine.queue import EventQueueStore
from bridge.spine.routes import EventRoutes

__all__ = ["SanteGuard", "network_policy"]

log = logging.getLogger("santeguard")


class SanteGuard:
    """One running SantéGuard instance. Build it inside a running event loop."""

    def __init__(self, config: Config, *, gate: GatePort | None = None) -> None:
        cfg = self.config = config
        self.metrics = Metrics()
        self.translator = build_translator()
        self.db = open_database(
            cfg.database.uri,
            sqlite_synchronous=cfg.database.sqlite_synchronous,
            min_size=cfg.database.min_size,
            max_size=cfg.database.max_size,
        )
        self.queue = EventQueueStore(self.db, sqlite_synchronous=cfg.database.sqlite_synchronous)
        self.audit = AuditLog(self.db)
        self.verifications = VerificationStore(self.db)
        self.room_policies = RoomPolicyStore(self.db)
        self.rooms = RoomStore(self.db)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=True if cfg.homeserver.verify_ssl else False),
            headers={"User-Agent": f"SanteGuard/{__version__}"},
        )
        self.matrix = MatrixClient(
            cfg.homeserver.address,
            cfg.bot_mxid,
            cfg.appservice.as_token.get_secret_value(),
            self.session,
            bot_displayname=cfg.appservice.bot_displayname,
        )
        lang, t = cfg.bot.language, self.translator
        self.alerts = AdminAlerts(self.matrix, t, admin_room=cfg.gate.admin_room, language=lang)
        self.seal = Seal(cfg, self.db, self.audit, self.matrix, t)
        self.outages = build_outages(self.metrics, self.alerts)  # bridge/app/outages.py

        # Identity: the directory, the one binding path, zero-touch PSC.
        self.directory = build_directory(cfg, self.db)
        self.binder = Binder(
            self.verifications,
            watched_directory(self.directory, self.outages),
            self.audit,
            verification_days=cfg.gate.verification_days,
        )
        psc = build_psc(cfg, self.session, self.binder, self.verifications)

        # Gate: synchronous decisions, backstop, forced encryption.
        self.gatekeeper = Gatekeeper(
            self.room_policies,
            self.verifications,
            network_policy(cfg),
            self.audit,
            t,
            language=lang,
            encrypted_by_default=cfg.gate.homeserver_encrypts_by_default,
            zero_touch=psc,
        )
        # Several replicas (PostgreSQL): each snapshot follows the database; the leader
        # alone dispatches, runs jobs and the bot's device (docs/cluster.md).
        self.cluster = build_cluster(
            cfg,
            self.db,
            {
                "verification": (self.verifications.load,),
                "room_policy": (self.room_policies.load,),
                "room": (self.rooms.load,),
                "mail_link": (lambda: self.mail.store.load(),),
                "mail_allowlist": (lambda: self.mail.store.load(),),
            },
            on_txn=lambda: self.leadership.wake_dispatch(),
        )
        self.gate: GatePort = gate or FreshGate(
            self.gatekeeper, self.cluster.feed, t, self.metrics, language=lang
        )
        # The enforcement user: in every room (the room module invites it), no device.
        self.enforcer_matrix = self.matrix.as_user(
            enforcer_mxid(cfg), cfg.appservice.enforcer_displayname
        )
        self.enforcer = Enforcer(
            EnforcementStore(self.db),
            self.room_policies,
            self.gatekeeper,
            self.verifications,
            self.enforcer_matrix,
            self.audit,
            self.alerts,
            t,
            language=lang,
        )
        own = frozenset({cfg.bot_mxid, self.enforcer_matrix.bot_mxid})
        self.backstop = Backstop(
            self.gatekeeper, self.room_policies, self.enforcer, self.audit, own_users=own
        )
        self.reconciler = Reconciler(
            self.enforcer_matrix, self.room_policies, self.gatekeeper, self.enforcer
        )
        self.forced = ForcedEncryption(
            self.gatekeeper,
            self.enforcer_matrix,
            self.audit,
            self.alerts,
            t,
            require_encryption=cfg.gate.require_encryption,
            language=lang,
        )
        self.crypto = build_device(
            cfg,
            self.session,
            self.matrix,
            self.rooms,
            t,
            self.gatekeeper.admits,
            db=self.db,
            replica_id=self.cluster.replica_id,
        )
        self.reverifier = Reverifier(
            self.verifications,
            self.binder,
            self.enforcer,
            self.audit,
            self.alerts,
            period_seconds=cfg.gate.reverify_hours * 3600,
        )

        # Mail: rooms linked to the network's secure mailbox (MSSanté).
        self.mail = build_mail(
            cfg,
            db=self.db,
            matrix=self.matrix,
            enforcer=self.enforcer_matrix,
            crypto=self.crypto,
            session=self.session,
            verifications=self.verifications,
            joined=self.rooms.is_joined,
            rooms_language=self.rooms,
            audit=self.audit,
            alerts=self.alerts,
            text=t,
            metrics=self.metrics,
            trigger=lambda name: self.scheduler.trigger(name),
            room_name=self.matrix.room_name,
            own_users=frozenset({cfg.bot_mxid, self.enforcer_matrix.bot_mxid}),
        )

        # Retention: every protected room carries a policy within the network's bounds.
        self.retention = build_retention(
            cfg,
            enforcer=self.enforcer_matrix,
            bot=self.matrix,
            audit=self.audit,
            alerts=self.alerts,
            text=t,
            is_protected=self.gatekeeper.is_protected,
            is_admin_room=self.gatekeeper.is_admin_room,
            languages=self.rooms,
            own_users=own,
            admins=frozenset(cfg.bot.admins),
            db=self.db,
            session=self.session,
        )

        # Commands, and the bot's presence in the rooms that invite it.
        self.status = Status(
            __version__,
            queue_depth=self.queue.depth,
            rooms_watched=self.rooms.count_joined,
            set_room_language=LanguageSetting(self.rooms, self.audit).set,
        )
        membership = BotMembership(
            self.matrix,
            self.rooms,
            self.audit,
            t,
            self.gatekeeper,
            prefix=cfg.bot.prefix,
            default_language=lang,
            on_joined=[self.forced.ensure_encrypted],
        )
        self.commands = build_command_service(
            cfg,
            t,
            (
                membership,
                EncryptionCommands(self.crypto),
                IdentityCommands(
                    binder=self.binder,
                    store=self.verifications,
                    enforcer=self.enforcer,
                    profiles=self.matrix,
                    audit=self.audit,
                ),
                RoomCommands(
                    store=self.room_policies,
                    enforcer=self.enforcer,
                    encryption=self.forced,
                    audit=self.audit,
                    admins=frozenset(cfg.bot.admins),
                ),
                self.mail.commands,
                *self.retention.commands,
                build_report_commands(
                    cfg,
                    db=self.db,
                    session=self.session,
                    matrix=self.matrix,
                    crypto=self.crypto,
                    enforcer_id=self.enforcer_matrix.bot_mxid,
                    chain=self.audit,
                    is_admin_room=self.gatekeeper.is_admin_room,
                ),
            ),
            status=self.status,
            matrix=self.matrix,
            rooms=self.rooms,
            audit=self.audit,
            command_log=CommandLog(self.db),
        )

        # Events: each capability subscribes to the types it handles.
        self.routes = EventRoutes(*own)
        subscribers: list[Subscriber] = [
            *self.retention.subscribers,  # the event ledger first: it sees every event
            self.backstop,
            EnforcerPresence(self.enforcer_matrix, self.audit, self.alerts),
            self.forced,
            membership,
            self.commands,
            *self.mail.subscribers,
        ]
        if self.crypto is not None:
            subscribers.append(EncryptedEvents(self.crypto, self.rooms))
        for subscriber in subscribers:
            subscriber.subscribe(self.routes)
        self.dispatcher = Dispatcher(
            self.queue,
            self.routes.handle,
            self.metrics,
            max_concurrent_rooms=cfg.dispatch.max_concurrent_rooms,
            max_attempts=cfg.dispatch.max_attempts,
            retry_base_seconds=cfg.dispatch.retry_base_seconds,
            max_backoff_seconds=cfg.dispatch.max_backoff_seconds,
            max_in_memory_events=cfg.dispatch.max_in_memory_events,
            stuck_after_seconds=cfg.dispatch.stuck_after_seconds,
            on_stuck=self._room_stuck,
        )
        starts = [self.enforcer_matrix.ensure_bot, *([self.crypto.start] if self.crypto else [])]
        self.bot = BotAccount(self.matrix, after=starts)
        self.scheduler = build_scheduler(
            cfg,
            self.metrics,
            self.db,
            self.queue,
            self.reverifier,
            self.enforcer,
            self.reconciler,
            bot_ready=self.bot.ready,
            claims=self.cluster.claims,
            extra_jobs=[*self.mail.jobs, *self.retention.jobs, *self.seal.jobs()],
        )
        self.enforcer.on_planned = lambda: self.scheduler.trigger("enforcement")
        self.leadership = Leadership(
            self.cluster,
            self.metrics,
            self.audit,
            self.enforcer,
            self.dispatcher,
            self.queue,
            self.scheduler,
            self.bot,
            self.crypto,
        )
        # Probes the homeserver; pings it when reachable so it delivers what waited.
        self.homeserver_watch, self.pinger = build_homeserver_watch(
            cfg, self.matrix, self.metrics, replica=self.cluster.replica_id
        )
        self._runner: web.AppRunner | None = None

    @property
    def sealer(self) -> AuditSealer | None:
        return self.seal.sealer

    @property
    def bot_ready(self) -> asyncio.Event:
        return self.bot.ready

    def _server(self) -> AppserviceServer:
        cfg = self.config
        # Required by the config model: an empty or placeholder token never gets this far.
        antispam_token = cfg.antispam.token.get_secret_value() if cfg.antispam.token else None
        return AppserviceServer(
            hs_token=cfg.appservice.hs_token.get_secret_value(),
            antispam_token=antispam_token,
            antispam_path=cfg.antispam.path,
            max_body_bytes=cfg.appservice.max_body_bytes,
            metrics=self.metrics,
            store_txn=self.leadership.store,
            begin_store=self.leadership.begin_store,
            on_stored=self.leadership.stored,
            intake=self.queue.intake,
            gate=self.gate,
            readiness=Readiness(
                {
                    "database": self._db_ok,
                    "homeserver": self.matrix.homeserver_reachable,
                    # Replicas: one whose snapshot may be stale refuses; not ready.
                    **({"change_feed": self.leadership.feed_fresh} if self.cluster.shared else {}),
                }
            ),
            user_query=self.bot.user_query,
            report=self._report,
        )

    async def _room_stuck(self, room_id: str, event_type: str, error: str, since: float) -> None:
        stamp = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d %H:%M UTC")
        await self.alerts.alert(
            "alert.room_stuck", room=room_id, event_type=event_type, error=error, since=stamp
        )

    def _report(self) -> dict[str, Any]:
        """Beside the checks: what degrades without making SantéGuard unready. A mail
        outage must not take the gate (served by the same process) out of service."""
        body: dict[str, Any] = {"stuck_rooms": [asdict(s) for s in self.dispatcher.stuck_rooms()]}
        if self.mail.health is not None:
            body["mail"] = self.mail.health.report_body()
        if deps := self.outages.report_body():  # smtp, imap, directory: degraded, not unready
            body["dependencies"] = deps
        return body

    async def _db_ok(self) -> bool:
        await self.db.fetchval("SELECT 1")
        return True

    async def start(self) -> None:
        cfg = self.config
        await start_database(self.db, cfg.database.uri)
        await self.queue.open(journal=True)  # SQLite: replays what a power loss took
        self.audit.use_writer(self.queue.writer)
        self.retention.use_writer(self.queue.writer)
        self.room_policies.use_writer(self.queue.writer)
        self.seal.start()
        await self.verifications.load()
        await self.room_policies.load()
        await self.rooms.load()
        await self.mail.start()
        await self.cluster.feed.start()
        # Behind the guard: read timeouts and a connection cap (bridge/spine/guard.py).
        self._runner, self.http_guard = await listen(self._server().build_app(), cfg, self.metrics)
        log.info(
            "SantéGuard %s listening on %s:%d",
            __version__,
            cfg.appservice.hostname,
            cfg.appservice.port,
        )
        await self.homeserver_watch.start()  # listening: the ping's call back is answered
        await start_outages(self)
        await self.cluster.lease.start(self.leadership.lead, self.leadership.lost)

    async def stop(self) -> None:
        leader = self.cluster.lease.leader
        await self.homeserver_watch.stop()
        await self.outages.stop()
        await self.pinger.stop()
        await self.bot.stop()
        await self.scheduler.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.dispatcher.stop()
        await self.retention.stop()
        if leader:
            await self.seal.at_stop()
        await self.mail.stop()
        if self.crypto is not None:
            await self.crypto.stop()
        if isinstance(self.directory, FhirDirectory):
            await self.directory.close()
        await self.session.close()
        await self.cluster.feed.stop()
        await self.cluster.lease.stop()  # last: a follower leads once this one is done
        await self.queue.close()
        await self.db.stop()
