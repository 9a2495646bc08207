"""Commands every SantéGuard bot has: help, ping, status, language."""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.commands import Arg, Permission, RegisteredCommand, command
from bot.context import CommandContext
from bot.i18n import SUPPORTED_LANGUAGES, Lang, is_language

_UNITS = (
    ("duration.days", 86400),
    ("duration.hours", 3600),
    ("duration.minutes", 60),
    ("duration.seconds", 1),
)


def format_duration(seconds: float, ctx: CommandContext) -> str:
    """The two most significant units, zeros dropped: "3 j 4 h", "1 h", "2 min 5 s"."""
    remaining = max(0, int(seconds))
    amounts: list[tuple[str, int]] = []
    for key, size in _UNITS:
        n, remaining = divmod(remaining, size)
        amounts.append((key, n))
    first = next((i for i, (_, n) in enumerate(amounts) if n), len(amounts) - 1)
    shown = [(k, n) for k, n in amounts[first : first + 2] if n] or [amounts[-1]]
    return " ".join(ctx.t(k, n=n) for k, n in shown)


class BuiltinCommands:
    """Built-in commands. ``clock`` returns seconds since the epoch (``time.time``)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    @command(
        "help",
        "help.description.help",
        args=(Arg("command", optional=True, label_key="arg.command"),),
        aliases=("aide",),
    )
    async def help(self, ctx: CommandContext, command: str | None = None) -> None:
        if command is None:
            lines = [ctx.t("help.header")]
            lines += [self._line(ctx, cmd) for cmd in ctx.commands]
            lines.append(ctx.t("help.footer", prefix=ctx.prefix))
            await ctx.reply("\n".join(lines))
            return
        cmd = ctx.commands.get(command)
        if cmd is None:
            await ctx.reply_unknown(command)
            return
        text = ctx.t(
            "help.detail",
            usage=ctx.usage(cmd.spec),
            description=ctx.t(cmd.spec.help_key),
            permission=ctx.t(f"permission.{cmd.spec.permission.value}"),
        )
        if cmd.spec.aliases:
            aliases = ", ".join(f"`{a}`" for a in cmd.spec.aliases)
            text += "\n" + ctx.t("help.aliases", aliases=aliases)
        await ctx.reply(text)

    @staticmethod
    def _line(ctx: CommandContext, cmd: RegisteredCommand) -> str:
        return ctx.t(
            "help.line",
            usage=ctx.usage(cmd.spec),
            description=ctx.t(cmd.spec.help_key),
            permission=ctx.t(f"permission.{cmd.spec.permission.value}"),
        )

    @command("ping", "help.description.ping")
    async def ping(self, ctx: CommandContext) -> None:
        """Time from the homeserver stamping the event to now (clamped: clocks can skew)."""
        rtt_ms = max(0, round(self._clock() * 1000 - ctx.origin_server_ts))
        await ctx.reply_t("pong", rtt_ms=rtt_ms)

    @command("status", "help.description.status", aliases=("statut",))
    async def status(self, ctx: CommandContext) -> None:
        services = ctx.services
        await ctx.reply_t(
            "status.report",
            version=services.version,
            uptime=format_duration(services.uptime_seconds(), ctx),
            rooms=await services.rooms_watched(),
            queue=await services.queue_depth(),
        )

    @command(
        "language",
        "help.description.language",
        args=(Arg("lang", choices=SUPPORTED_LANGUAGES, label_key="arg.language"),),
        permission=Permission.ROOM_ADMIN,
        aliases=("langue",),
    )
    async def language(self, ctx: CommandContext, lang: str) -> None:
        """Confirms in the new language, so the room sees the effect immediately."""
        if not is_language(lang):  # the parser only lets declared choices through
            raise ValueError("unsupported language")
        new: Lang = lang
        await ctx.services.set_room_language(ctx.room_id, new)
        name = ctx.translator.t(f"language.name.{new}", new)
        await ctx.reply(ctx.translator.t("language.changed", new, language=name))
