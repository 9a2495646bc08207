"""`!sg mail link|unlink|status|queue|quarantine|xdm`: the mail bridge, run from the room.

Linking is done by talking to the bot in the room: the bot with the E2EE device reads a
room only where it was invited, so a room it cannot read cannot be linked.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from bot.commands import Arg, ArgKind, CommandError, Permission, command
from bot.context import CommandContext
from bridge.core.ports import AuditPort
from bridge.mail import policy
from bridge.mail.health import MailHealth
from bridge.mail.outbox import OutboxStore
from bridge.mail.store import Link, MailStore, RoomFile
from bridge.mail.text import REASONS, problem_code

log = logging.getLogger("santeguard.mail.commands")

RoomName = Callable[[str], Awaitable[str | None]]


class XdmSender(Protocol):
    async def send_xdm(
        self, room_id: str, event_id: str, sender: str, link: Link, files: list[RoomFile]
    ) -> str: ...


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


class MailCommands:
    def __init__(
        self,
        *,
        store: MailStore,
        outbox: OutboxStore,
        health: MailHealth | None,
        audit: AuditPort,
        room_name: RoomName,
        xdm: XdmSender | None,
        mailbox: str | None,
        admins: frozenset[str],
    ) -> None:
        self._store = store
        self._outbox = outbox
        self._health = health
        self._audit = audit
        self._room_name = room_name
        self._xdm = xdm
        self._mailbox = mailbox
        self._admins = admins

    @command(
        "mail",
        "help.description.mail",
        args=(
            Arg(
                "action",
                choices=("link", "unlink", "status", "queue", "quarantine", "xdm"),
                label_key="arg.action",
            ),
            Arg("values", ArgKind.REST, optional=True, label_key="arg.values"),
        ),
        permission=Permission.ROOM_ADMIN,
        aliases=("courriel",),
    )
    async def mail(self, ctx: CommandContext, action: str, values: str | None = None) -> None:
        if self._mailbox is None:
            raise CommandError("mail.disabled")
        handler = {
            "link": self._link,
            "unlink": self._unlink,
            "status": self._status,
            "queue": self._queue,
            "quarantine": self._quarantine,
            "xdm": self._xdm_cmd,
        }[action]
        await handler(ctx, (values or "").strip())

    async def _link(self, ctx: CommandContext, values: str) -> None:
        parts = values.split(maxsplit=1)
        if not parts:
            raise CommandError("mail.link_usage", prefix=ctx.prefix)
        await self._store.reload_allowlist()
        address = policy.normalize_address(parts[0].strip("<>"))
        if address is None:
            raise CommandError("mail.bad_address", address=policy.header_safe(parts[0], 80))
        if not self._store.allowlist.allows(address):
            await self._audit.record(
                ctx.sender,
                "mail.link_refused",
                room_id=ctx.room_id,
                subject=address,
                details={"reason": "not_on_allowlist"},
            )
            raise CommandError("mail.not_allowed", address=address)
        subject = policy.header_safe(parts[1] if len(parts) > 1 else "", 120)
        if not subject:
            subject = policy.header_safe(await self._room_name(ctx.room_id) or "", 120)
        subject = subject or ctx.t("mail.default_subject")
        link = Link(ctx.room_id, address, policy.room_tag(ctx.room_id), subject, ctx.sender)
        await self._store.link(link)
        await self._audit.record(
            ctx.sender,
            "mail.linked",
            room_id=ctx.room_id,
            subject=address,
            details={"subject": subject},
        )
        await ctx.reply_t("mail.linked", address=address, subject=subject)

    async def _unlink(self, ctx: CommandContext, values: str) -> None:
        link = await self._store.unlink(ctx.room_id)
        if link is None:
            raise CommandError("mail.not_linked", prefix=ctx.prefix)
        # "Nothing leaves any more": mail still waiting for the relay is stopped too (a
        # link to the wrong address must not deliver once the relay is back).
        cancelled = await self._outbox.cancel(ctx.room_id)
        await self._audit.record(
            ctx.sender,
            "mail.unlinked",
            room_id=ctx.room_id,
            subject=link.address,
            details={"cancelled": cancelled},
        )
        await ctx.reply_t("mail.unlinked", address=link.address)

    async def _status(self, ctx: CommandContext, values: str) -> None:
        link = self._store.link_of(ctx.room_id)
        lines = [
            ctx.t("mail.status_link", address=link.address, subject=link.subject)
            if link
            else ctx.t("mail.status_unlinked", prefix=ctx.prefix),
            ctx.t("mail.status_mailbox", mailbox=self._mailbox or "-"),
        ]
        problems = self._health.problems() if self._health else {}
        if problems:
            for channel, problem in sorted(problems.items()):
                lines.append(
                    ctx.t(
                        "mail.status_problem",
                        channel=channel,
                        problem=ctx.t(f"mail.problem.{problem_code(problem)}"),
                    )
                )
        else:
            lines.append(ctx.t("mail.status_healthy"))
        counts = await self._outbox.counts(ctx.room_id)
        lines.append(
            ctx.t(
                "mail.status_counts",
                sent=counts.get("sent", 0),
                pending=counts.get("pending", 0),
                failed=counts.get("failed", 0),
            )
        )
        await ctx.reply("\n".join(lines))

    async def _queue(self, ctx: CommandContext, values: str) -> None:
        entries = await self._outbox.entries(ctx.room_id)
        if not entries:
            await ctx.reply_t("mail.queue_empty")
            return
        lines = [ctx.t("mail.queue_header", count=len(entries))]
        for e in entries:
            reply = e.last_reply or "-"
            if e.problem:
                reply = ctx.t(f"mail.problem.{problem_code(e.problem)}")
            elif e.last_code is not None:
                reply = f"{e.last_code} {reply}"
            lines.append(
                ctx.t(
                    f"mail.queue_{e.status}",
                    to=e.recipient,
                    attempts=e.attempts,
                    reply=reply[:200],
                    due=_when(e.due_at),
                )
            )
        await ctx.reply("\n".join(lines))

    async def _quarantine(self, ctx: CommandContext, values: str) -> None:
        if ctx.sender not in self._admins:
            raise CommandError("mail.quarantine_admins_only")
        rows = await self._store.quarantined()
        if not rows:
            await ctx.reply_t("mail.quarantine_empty")
            return
        lines = [ctx.t("mail.quarantine_header", count=len(rows))]
        for message_id, sender, reason, at in rows:
            lines.append(
                ctx.t(
                    "mail.quarantine_item",
                    when=_when(at),
                    sender=sender,
                    reason=ctx.t(f"mail.reason.{reason}") if reason in REASONS else reason,
                    message_id=message_id,
                )
            )
        await ctx.reply("\n".join(lines))

    async def _xdm_cmd(self, ctx: CommandContext, values: str) -> None:
        link = self._store.link_of(ctx.room_id)
        if link is None or self._xdm is None:
            raise CommandError("mail.not_linked", prefix=ctx.prefix)
        files = await self._store.room_files(ctx.room_id)
        if not values:
            if not files:
                await ctx.reply_t("mail.xdm_no_files")
                return
            lines = [ctx.t("mail.xdm_list_header", prefix=ctx.prefix)]
            lines += [f"{i}. {f.name} ({f.mimetype}, {f.size} o)" for i, f in enumerate(files, 1)]
            await ctx.reply("\n".join(lines))
            return
        chosen: list[RoomFile] = []
        for token in values.replace(",", " ").split():
            if token.lower() in ("all", "tout", "tous"):
                chosen = list(files)
                break
            if not token.isdigit() or not 1 <= int(token) <= len(files):
                raise CommandError("mail.xdm_bad_choice", value=policy.header_safe(token, 20))
            chosen.append(files[int(token) - 1])
        if not chosen:
            raise CommandError("mail.xdm_no_files")
        message_id = await self._xdm.send_xdm(ctx.room_id, ctx.event_id, ctx.sender, link, chosen)
        await ctx.reply_t(
            "mail.xdm_queued", count=len(chosen), to=link.address, message_id=message_id
        )
