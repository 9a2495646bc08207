"""Builds the retention capability from the config and the ports it needs (no behaviour)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType

from bridge.config import Config
from bridge.core.ports import (
    AlertPort,
    AuditPort,
    MatrixPort,
    RoomLanguagePort,
    Subscriber,
    TextPort,
)
from bridge.gate.policy import StateRule
from bridge.matrix.client import MatrixClient
from bridge.ops.scheduler import Job
from bridge.retention.commands import RetentionCommands
from bridge.retention.config import RetentionConfig
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
    commands: list[object] = field(default_factory=list)
    subscribers: list[Subscriber] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)


def build_retention(
    cfg: Config,
    *,
    enforcer: MatrixClient,
    bot: MatrixPort,
    audit: AuditPort,
    alerts: AlertPort,
    text: TextPort,
    is_protected: Callable[[str], bool],
    languages: RoomLanguagePort,
    own_users: frozenset[str],
    admins: Collection[str],
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
    parts = RetentionParts(policies=policies)
    parts.subscribers.append(policies)
    parts.commands.append(
        RetentionCommands(policies, bot, admins=admins, is_protected=is_protected)
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
    return parts
