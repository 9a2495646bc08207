"""Builds the retention capability from the config and the ports it needs (no behaviour)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from types import MappingProxyType

import aiohttp
from mautrix.util.async_db import Database

from bridge.config import Config
from bridge.core.ports import (
    AlertPort,
    AuditPort,
    MatrixPort,
    RoomLanguagePort,
    Subscriber,
    TextPort,
)
from bridge.db.sqlite_writer import SQLiteWriter
from bridge.gate.policy import StateRule
from bridge.matrix.client import MatrixClient
from bridge.ops.scheduler import Job
from bridge.retention.admin_api import SynapseAdmin
from bridge.retention.audit import RetentionAudit
from bridge.retention.commands import AuditCommands, RetentionCommands
from bridge.retention.config import RetentionConfig
from bridge.retention.inactive import InactiveRooms, InactivityStore
from bridge.retention.ledger import EventLedger, LedgerSubscriber
from bridge.retention.policy import RETENTION_EVENT, check_content
from bridge.retention.service import RetentionPolicies


def retention_rules(config: RetentionConfig) -> Mapping[str, StateRule]:
    """The gate's check of ``m.room.retention`` against the network's bounds."""
    if not config.enabled:
        return MappingProxyType({})
    return MappingProxyType({RETENTION_EVENT: partial(check_content, bounds=config.bounds)})


@dataclass
class RetentionParts:
    policies: RetentionPolicies | None = None
    admin: SynapseAdmin | None = None
    inactive: InactiveRooms | None = None
    ledger: LedgerSubscriber | None = None
    audit: RetentionAudit | None = None
    commands: list[object] = field(default_factory=list)
    subscribers: list[Subscriber] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)

    def use_writer(self, writer: SQLiteWriter | None) -> None:
        """On SQLite, the ledger commits through the intake's writer, like the audit log."""
        if self.ledger is not None:
            self.ledger.ledger.use_writer(writer)

    async def stop(self) -> None:
        if self.ledger is not None:
            await self.ledger.close()


def build_retention(
    cfg: Config,
    *,
    enforcer: MatrixClient,
    bot: MatrixPort,
    audit: AuditPort,
    alerts: AlertPort,
    text: TextPort,
    is_protected: Callable[[str], bool],
    is_admin_room: Callable[[str], bool],
    languages: RoomLanguagePort,
    own_users: frozenset[str],
    admins: Collection[str],
    db: Database,
    session: aiohttp.ClientSession,
) -> RetentionParts:
    r = cfg.retention
    if not r.enabled:
        return RetentionParts()
    policies = RetentionPolicies(
        enforcer,
        r.bounds,
        audit,
        text,
        is_protected=is_protected,
        languages=languages,
        default_language=cfg.bot.language,
        own_users=own_users,
    )
    # The admin API, as the enforcement user (which the install makes a server admin).
    admin = SynapseAdmin(
        cfg.homeserver.address,
        cfg.appservice.as_token.get_secret_value(),
        enforcer.bot_mxid,
        session,
    )
    inactive = InactiveRooms(
        InactivityStore(db),
        enforcer,
        admin,
        audit,
        alerts,
        text,
        is_protected=is_protected,
        languages=languages,
        default_language=cfg.bot.language,
        after_ms=r.inactive_after_ms,
        notice_ms=r.inactive_notice_ms,
    )
    # First subscriber: it sees every event, those other guards refuse included.
    ledger = LedgerSubscriber(EventLedger(db), own_users)
    parts = RetentionParts(policies=policies, admin=admin, inactive=inactive, ledger=ledger)
    parts.subscribers.append(ledger)
    parts.subscribers.append(policies)
    # The purge-proof audit: every room on the server, proven through the admin API.
    proof = RetentionAudit(
        db,
        admin,
        ledger.ledger,
        r.bounds,
        r.purge_interval_ms,
        audit,
        lambda: datetime.now(UTC),
        before_run=ledger.flush,
    )
    parts.audit = proof
    parts.commands += [
        RetentionCommands(
            policies, bot, admins=admins, is_protected=is_protected, last_audit=proof
        ),
        AuditCommands(proof, is_admin_room=is_admin_room),
    ]

    keep_ms = cfg.audit.keep_days * 86_400_000

    async def run_audit() -> None:
        await proof.run()
        # Proven-gone entries are evidence as long as the audit log keeps its own.
        await ledger.ledger.prune(int(datetime.now(UTC).timestamp() * 1000) - keep_ms)

    parts.jobs.append(
        Job(
            "retention_audit",
            run_audit,
            interval_seconds=r.audit_hours * 3600,
            retry_seconds=600,
            first_delay_seconds=600,
        )
    )

    async def sweep() -> None:
        await policies.sweep()

    parts.jobs.append(
        Job(
            "retention_policy",
            sweep,
            interval_seconds=cfg.gate.reconcile_minutes * 60,
            retry_seconds=60,
            first_delay_seconds=0,
        )
    )
    parts.jobs.append(
        Job(
            "retention_inactive",
            inactive.run,
            interval_seconds=r.inactive_check_minutes * 60,
            retry_seconds=300,
        )
    )
    return parts
