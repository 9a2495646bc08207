"""`!sg retention` (the room's policy) and `!sg retention set 90d` (room admins)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Protocol

from bot import permissions
from bot.commands import Arg, ArgKind, CommandError, Permission, command
from bot.context import CommandContext
from bridge.core.ports import MatrixPort
from bridge.retention.audit import RetentionAudit
from bridge.retention.audit_render import render
from bridge.retention.policy import DurationError, days, human_duration, parse_duration
from bridge.retention.service import RetentionPolicies


class LastAuditPort(Protocol):
    async def latest_by_room(self) -> dict[str, tuple[str, str, int]]:
        """Each room's latest verdict: room → (verdict, policy state, finished at)."""
        ...


class RetentionCommands:
    def __init__(
        self,
        policies: RetentionPolicies,
        matrix: MatrixPort,
        *,
        admins: Collection[str],
        is_protected: Any,
        last_audit: LastAuditPort | None = None,
    ) -> None:
        self._policies = policies
        self._matrix = matrix
        self._admins = admins
        self._protected = is_protected
        self._last_audit = last_audit

    def _duration(self, ctx: CommandContext, ms: int) -> str:
        number, unit = human_duration(ms)
        return ctx.t(f"retention.unit.{unit}", n=number)

    @command(
        "retention",
        "help.description.retention",
        args=(
            Arg("action", choices=("set",), optional=True, label_key="arg.action"),
            Arg("duration", ArgKind.REST, optional=True, label_key="arg.duration"),
        ),
        permission=Permission.ANYONE,
        aliases=("conservation",),
    )
    async def retention(
        self, ctx: CommandContext, action: str | None = None, duration: str | None = None
    ) -> None:
        if action == "set":
            await self._set(ctx, duration)
            return
        bounds = self._policies.bounds
        current = await self._policies.current(ctx.room_id)
        lines = [
            ctx.t(
                "retention.show",
                duration=self._duration(ctx, current.effective_ms),
                low=self._duration(ctx, bounds.min_ms),
                high=self._duration(ctx, bounds.max_ms),
            ),
            ctx.t(f"retention.state.{current.state}"),
        ]
        if not self._protected(ctx.room_id):
            lines.append(ctx.t("retention.unprotected"))
        if self._last_audit is not None:
            verdict = (await self._last_audit.latest_by_room()).get(ctx.room_id)
            if verdict is None:
                lines.append(ctx.t("retention.no_audit_yet"))
            else:
                lines.append(ctx.t(f"retention.audit_verdict.{verdict[0]}"))
        await ctx.reply("\n".join(lines))

    async def _set(self, ctx: CommandContext, duration: str | None) -> None:
        levels = await self._matrix.power_levels(ctx.room_id)
        creators = await self._matrix.room_creators(ctx.room_id)
        if not permissions.check(
            Permission.ROOM_ADMIN, ctx.sender, self._admins, levels, room_creators=creators
        ):
            raise CommandError("retention.set_needs_admin")
        if not duration:
            raise CommandError("retention.usage", prefix=ctx.prefix)
        try:
            ms = parse_duration(duration)
        except DurationError as e:
            raise CommandError(f"retention.{e.reason}", value=duration) from None
        bounds = self._policies.bounds
        if not bounds.within(ms):
            raise CommandError(
                "gate.reason.retention_out_of_bounds",
                value=f"{days(ms):g}",
                low=f"{days(bounds.min_ms):g}",
                high=f"{days(bounds.max_ms):g}",
            )
        await self._policies.set(ctx.room_id, {"max_lifetime": ms}, by=ctx.sender)
        await ctx.reply_t("retention.set_done", duration=self._duration(ctx, ms))


class AuditCommands:
    """`!sg audit`: run the purge-proof audit now and answer with its verdict (admin room)."""

    def __init__(self, audit: RetentionAudit, *, is_admin_room: Callable[[str], bool]) -> None:
        self._audit = audit
        self._is_admin_room = is_admin_room

    @command("audit", "help.description.audit", permission=Permission.NETWORK_ADMIN)
    async def audit(self, ctx: CommandContext) -> None:
        if not self._is_admin_room(ctx.room_id):
            raise CommandError("retention.audit_admin_room_only")
        run = await self._audit.run()
        await ctx.reply(render(run, ctx.translator.t, ctx.language))
