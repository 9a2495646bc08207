"""What a command handler receives: who asked, where, in which language, and how to answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from bot.i18n import Lang, Translator, is_language

if TYPE_CHECKING:
    from bot.commands import Arg, CommandRegistry, CommandSpec

Reply = Callable[[str], Awaitable[None]]
"""Sends markdown-ish text to the room. The text may contain user-supplied words, so the
sender should set an empty ``m.mentions`` to keep ``@room`` from notifying anyone."""


class BotServices(Protocol):
    """The parts of the running bridge that built-in commands need, kept abstract for tests."""

    @property
    def version(self) -> str: ...

    def uptime_seconds(self) -> float: ...

    def rooms_watched(self) -> Awaitable[int]: ...

    def queue_depth(self) -> Awaitable[int]: ...

    def set_room_language(self, room_id: str, lang: Lang) -> Awaitable[None]: ...


def resolve_language(room_setting: str | None, default: Lang) -> Lang:
    """Per-room setting first, then the config's ``bot.language``; unknown values are ignored."""
    return room_setting if is_language(room_setting) else default


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandContext:
    """One command invocation. Build it with `CommandDispatcher.context`.

    ``origin_server_ts`` is the event's timestamp in milliseconds since the epoch.
    ``commands``, ``translator`` and ``prefix`` come from the dispatcher so that handlers
    (``help`` in particular) need no reference back to it.
    """

    sender: str
    room_id: str
    event_id: str
    language: Lang
    reply: Reply = field(repr=False)
    origin_server_ts: int
    services: BotServices = field(repr=False)
    commands: CommandRegistry = field(repr=False)
    translator: Translator = field(repr=False)
    prefix: str

    def t(self, key: str, /, **params: object) -> str:
        """``key`` translated into this context's language."""
        return self.translator.t(key, self.language, **params)

    async def reply_t(self, key: str, /, **params: object) -> None:
        await self.reply(self.t(key, **params))

    async def reply_unknown(self, name: str) -> None:
        """'Unknown command', with the closest known name when there is one."""
        suggestion = self.commands.closest(name)
        if suggestion is None:
            await self.reply_t("unknown_command", prefix=self.prefix)
        else:
            await self.reply_t(
                "unknown_command.suggestion", prefix=self.prefix, suggestion=suggestion
            )

    def arg_label(self, arg: Arg) -> str:
        return self.t(arg.label_key) if arg.label_key else arg.name

    def usage(self, spec: CommandSpec) -> str:
        return spec.usage(self.prefix, self.arg_label)
