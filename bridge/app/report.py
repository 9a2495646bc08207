"""Builds the DPO report's command from the config and the running parts (no behaviour)."""

from __future__ import annotations

import re
from collections.abc import Callable

import aiohttp
from mautrix.util.async_db import Database

from bridge.config import Config
from bridge.e2ee.attachments import encrypt_attachment
from bridge.e2ee.device import BotDevice
from bridge.matrix.client import MatrixClient
from bridge.matrix.media import MediaClient
from bridge.report.commands import ReportCommands
from bridge.report.gather import ChainVerifierPort, GatherSettings, ReportGatherer
from bridge.report.homeserver import HomeserverRooms
from bridge.report.upload import RoomFileSender


def gather_settings(cfg: Config, *, period_days: int = 30) -> GatherSettings:
    """The report's view of the configuration (also for the running bridge's wiring)."""
    own = re.compile(
        f"@{re.escape(cfg.appservice.bot_username)}(_.+)?:{re.escape(cfg.homeserver.domain)}"
    )
    bounds = cfg.retention.bounds if cfg.retention.enabled else None
    return GatherSettings(
        network=cfg.homeserver.domain,
        protect_by_default=cfg.gate.protect_by_default,
        is_own_user=lambda user: own.fullmatch(user) is not None,
        bounds_ms=(bounds.min_ms, bounds.max_ms) if bounds else None,
        period_days=period_days,
    )


def build_report_commands(
    cfg: Config,
    *,
    db: Database,
    session: aiohttp.ClientSession,
    matrix: MatrixClient,
    crypto: BotDevice | None,
    enforcer_id: str,
    chain: ChainVerifierPort,
    is_admin_room: Callable[[str], bool],
) -> ReportCommands:
    """`!sg report`: the report built from the database and the enforcement user's view,
    uploaded to the admin room (encrypted when the room is)."""
    token = cfg.appservice.as_token.get_secret_value()
    return ReportCommands(
        source=ReportGatherer(
            db,
            gather_settings(cfg),
            live=HomeserverRooms(session, cfg.homeserver.address, token, enforcer_id),
            chain=chain,
        ),
        upload=RoomFileSender(
            matrix,
            MediaClient(session, cfg.homeserver.address, token),
            encrypt_attachment,
            crypto,
            matrix,
        ),
        is_admin_room=is_admin_room,
    )
