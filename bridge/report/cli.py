"""``santeguard report -c config.yaml --out report.html [--lang fr|en] [--days N]``.

Reads the configured database (upgraded first, like every one-off command) and, when it
answers, the homeserver as the enforcement user. Writes the file readable by its owner
only: it names members and rooms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

from bot.i18n import Translator
from bridge.app.oneoff import one_off_database
from bridge.app.report import gather_settings
from bridge.audit.log import AuditLog
from bridge.config import Config, ConfigError, load_config
from bridge.report.gather import ReportGatherer
from bridge.report.homeserver import HomeserverRooms
from bridge.report.model import ReportData
from bridge.report.render import render_html
from bridge.report.text import CATALOG


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="write the DPO report (one self-contained HTML file)",
        description="Per-room table (protection, encryption, retention and its proof, "
        "verified and unverified members, linked mailbox, last audit), decisions over time "
        "as a chart, the audit log's state. Reads the database, and the homeserver as the "
        "enforcement user when it answers (otherwise the report says so). Exit status: 0 "
        "written, 1 not written, 2 bad configuration.",
    )
    p.add_argument("-c", "--config", required=True, help="path to config.yaml")
    p.add_argument("--out", required=True, help="where to write the HTML file")
    p.add_argument("--lang", choices=["fr", "en"], default="fr")
    p.add_argument("--days", type=int, default=30, help="days of decisions in the chart")
    p.add_argument(
        "--timezone", default="Europe/Paris", help="time zone of the dates shown (IANA name)"
    )
    p.set_defaults(handler=cmd_report)


def enforcer_user(cfg: Config) -> str:
    return f"@{cfg.appservice.enforcer_username}:{cfg.homeserver.domain}"


async def build_report(cfg: Config, language: str, *, period_days: int = 30) -> ReportData:
    connector = aiohttp.TCPConnector(ssl=True if cfg.homeserver.verify_ssl else False)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        one_off_database(cfg) as db,
    ):
        live = HomeserverRooms(
            session,
            cfg.homeserver.address,
            cfg.appservice.as_token.get_secret_value(),
            enforcer_user(cfg),
        )
        gatherer = ReportGatherer(
            db, gather_settings(cfg, period_days=period_days), live=live, chain=AuditLog(db)
        )
        return await gatherer.gather(language)


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a file only its owner can read."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def cmd_report(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not 1 <= args.days <= 366:
        print("error: --days must be between 1 and 366", file=sys.stderr)
        return 2
    text = Translator().merged(CATALOG)
    data = asyncio.run(build_report(cfg, args.lang, period_days=args.days))
    out = Path(args.out)
    try:
        write_private(out, render_html(data, text, timezone=args.timezone))
    except OSError as e:
        print(f"error: cannot write {out}: {e.strerror}", file=sys.stderr)
        return 1
    if not data.homeserver_reached:
        print(text.t("report.cli.unreached", args.lang), file=sys.stderr)
    print(text.t("report.cli.written", args.lang, path=str(out), rooms=len(data.rooms)))
    return 0
