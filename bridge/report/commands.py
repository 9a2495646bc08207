"""`!sg report`: the DPO report, built now and sent as an HTML file to the admin room."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from bot.commands import CommandError, Permission, command
from bot.context import CommandContext
from bridge.report.model import ReportData
from bridge.report.render import render_html
from bridge.report.upload import UploadError

log = logging.getLogger("santeguard.report")


class ReportSource(Protocol):
    """``ReportGatherer``: the report's data, in a language."""

    async def gather(self, language: str) -> ReportData: ...


class FileUploadPort(Protocol):
    async def upload_file(self, room_id: str, filename: str, data: bytes, mimetype: str) -> str: ...


def report_filename(data: ReportData) -> str:
    stem = "rapport-dpo" if data.language == "fr" else "dpo-report"
    return f"santeguard-{stem}-{data.generated_at:%Y-%m-%d-%H%M}.html"


def chain_word(data: ReportData) -> str:
    """The ``report.chain.short_*`` key suffix for the audit log's state."""
    if not data.chain.checked:
        return "unchecked"
    return "ok" if data.chain.ok else "broken"


class ReportCommands:
    def __init__(
        self,
        *,
        source: ReportSource,
        upload: FileUploadPort,
        is_admin_room: Callable[[str], bool],
        timezone: str = "Europe/Paris",
    ) -> None:
        self._source = source
        self._upload = upload
        self._is_admin_room = is_admin_room
        self._timezone = timezone

    @command(
        "report",
        "help.description.report",
        permission=Permission.NETWORK_ADMIN,
        aliases=("rapport",),
    )
    async def report(self, ctx: CommandContext) -> None:
        if not self._is_admin_room(ctx.room_id):
            raise CommandError("report.admin_room_only")
        data = await self._source.gather(ctx.language)
        page = render_html(data, ctx.translator, timezone=self._timezone)
        try:
            await self._upload.upload_file(
                ctx.room_id, report_filename(data), page.encode("utf-8"), "text/html"
            )
        except UploadError as e:
            reason = ctx.t(f"report.upload.{e.reason}")
            raise CommandError("report.send_failed", reason=reason) from None
        except CommandError:
            raise
        except Exception as e:  # the homeserver refused or failed: say so, keep the cause
            log.warning("DPO report upload failed: %s", type(e).__name__)
            raise CommandError("report.send_failed", reason=ctx.t("report.upload.failed")) from e
        verdicts = data.verdict_counts()
        await ctx.reply_t(
            "report.sent",
            rooms=len(data.rooms),
            proven=verdicts["proven"],
            violations=verdicts["violations"],
            cannot_prove=verdicts["cannot_prove"],
            none=verdicts["none"],
            chain=ctx.t(f"report.chain.short_{chain_word(data)}"),
        )
