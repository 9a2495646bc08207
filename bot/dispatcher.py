"""From a message body to a handler call, with every failure turned into a translated reply.

Replies never echo what the user typed (a stray ``@room`` or markdown would be re-emitted
by the bot with its power level) and never include exception text (it may hold secrets or
patient data); logs carry the command name and event ID, never the arguments.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from enum import StrEnum
from typing import Any

from bot import permissions
from bot.commands import CommandError, CommandRegistry, RegisteredCommand
from bot.context import BotServices, CommandContext, Reply, resolve_language
from bot.i18n import DEFAULT_LANGUAGE, Lang, Translator
from bot.parser import DEFAULT_PREFIX, ArgumentError, bind_arguments, parse_invocation


class Outcome(StrEnum):
    """How a command ended: ``done`` ran; the others were refused or failed."""

    DONE = "done"
    UNKNOWN = "unknown"
    DENIED = "denied"  # the sender lacks the permission
    BAD_ARGUMENTS = "bad_arguments"
    REFUSED = "refused"  # the handler refused (CommandError)
    FAILED = "failed"


class CommandDispatcher:
    def __init__(
        self,
        registry: CommandRegistry,
        translator: Translator,
        prefix: str = DEFAULT_PREFIX,
        admins: Collection[str] = (),
        *,
        default_language: Lang = DEFAULT_LANGUAGE,
        log: logging.Logger | None = None,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> None:
        """Check up front that every help text and argument label has a translation.

        ``passthrough`` exceptions propagate out of a handler instead of being answered
        as an internal error: the application passes its "dependency down, retry the
        event" error, so an outage is retried rather than reported as a failure.
        """
        for cmd in registry:
            translator.require(cmd.spec.help_key, *cmd.spec.label_keys)
        parse_invocation("", prefix)  # validates the prefix
        self.registry = registry
        self.translator = translator
        self.prefix = prefix
        self.admins = frozenset(admins)
        self.default_language = default_language
        self._passthrough = passthrough
        self._log = log or logging.getLogger("santeguard.bot")

    def context(
        self,
        *,
        sender: str,
        room_id: str,
        event_id: str,
        origin_server_ts: int,
        reply: Reply,
        services: BotServices,
        room_language: str | None = None,
    ) -> CommandContext:
        """A context for one message; ``room_language`` is the room's stored setting, if any."""
        return CommandContext(
            sender=sender,
            room_id=room_id,
            event_id=event_id,
            language=resolve_language(room_language, self.default_language),
            reply=reply,
            origin_server_ts=origin_server_ts,
            services=services,
            commands=self.registry,
            translator=self.translator,
            prefix=self.prefix,
        )

    async def handle(
        self,
        ctx: CommandContext,
        body: str,
        power_levels: Mapping[str, Any] | None,
        *,
        room_creators: Collection[str] = (),
    ) -> bool:
        """Run the command in ``body`` if there is one; True if the message was a command.

        ``power_levels`` is the room's ``m.room.power_levels`` content (None if absent).
        """
        outcome = await self.run(ctx, body, power_levels, room_creators=room_creators)
        return outcome is not None

    async def run(
        self,
        ctx: CommandContext,
        body: str,
        power_levels: Mapping[str, Any] | None,
        *,
        room_creators: Collection[str] = (),
    ) -> Outcome | None:
        """Like ``handle``, saying how it ended (None: not a command), for the audit log."""
        invocation = parse_invocation(body, self.prefix)
        if invocation is None:
            return None
        if not invocation.name:
            await ctx.reply_t("bare_prefix", prefix=self.prefix)
            return Outcome.UNKNOWN
        cmd = self.registry.get(invocation.name)
        if cmd is None:
            await ctx.reply_unknown(invocation.name)
            return Outcome.UNKNOWN
        spec = cmd.spec
        if not permissions.check(
            spec.permission, ctx.sender, self.admins, power_levels, room_creators=room_creators
        ):
            self._log.info("Denied %s to %s in %s", spec.name, ctx.sender, ctx.room_id)
            await ctx.reply_t(
                "permission_denied",
                prefix=self.prefix,
                command=spec.name,
                permission=ctx.t(f"permission.{spec.permission.value}"),
            )
            return Outcome.DENIED
        try:
            values = bind_arguments(spec, invocation.arg_text)
        except ArgumentError as e:
            await self._reply_argument_error(ctx, cmd, e)
            return Outcome.BAD_ARGUMENTS
        return await self._run(ctx, cmd, values)

    async def _reply_argument_error(
        self, ctx: CommandContext, cmd: RegisteredCommand, err: ArgumentError
    ) -> None:
        params: dict[str, object] = {}
        if err.arg is not None:
            params = {"arg": ctx.arg_label(err.arg), "choices": ", ".join(err.arg.choices)}
        usage = ctx.t("usage", usage=ctx.usage(cmd.spec))
        await ctx.reply(f"{ctx.t(err.key, **params)}\n{usage}")

    async def _run(
        self, ctx: CommandContext, cmd: RegisteredCommand, values: Mapping[str, object]
    ) -> Outcome:
        self._log.debug("Running %s for %s in %s", cmd.spec.name, ctx.sender, ctx.room_id)
        try:
            await cmd.invoke(ctx, values)
        except CommandError as e:
            await ctx.reply_t(e.key, **e.params)
            return Outcome.REFUSED
        except Exception as e:
            if isinstance(e, self._passthrough):
                raise  # e.g. the homeserver is down: the event is retried as a whole
            # Exception text stays in the log: it can hold tokens, SQL or patient data.
            self._log.exception(
                "Command %s failed in %s (event %s)", cmd.spec.name, ctx.room_id, ctx.event_id
            )
            await ctx.reply_t("internal_error", reference=ctx.event_id)
            return Outcome.FAILED
        return Outcome.DONE
