"""``!sg encryption`` (alias ``chiffrement``) and the notice for undecryptable messages.

Practitioners need to know whether a room is really end-to-end encrypted and whether the
bot could read what they sent it: a command that silently did nothing would look like
a broken bot, or worse, like a message that went through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import Protocol

from bot.commands import command
from bot.context import CommandContext
from bot.i18n import Lang, Translator, is_language
from bot.render import to_html
from bridge.e2ee.status import RoomEncryption

log = logging.getLogger("santeguard.e2ee")


class EncryptionStatus(Protocol):
    """The bot's encrypted device, as far as the command needs it."""

    def room_encryption(self, room_id: str) -> Awaitable[RoomEncryption]: ...


class RoomLanguages(Protocol):
    async def language(self, room_id: str) -> str | None: ...


class NoticeSender(Protocol):
    async def send_notice(self, room_id: str, text: str, html: str | None = None) -> str: ...


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000))


class EncryptionCommands:
    """``status`` is None when the bot's encrypted device is switched off in the config."""

    def __init__(self, status: EncryptionStatus | None) -> None:
        self._status = status

    @command("encryption", "help.description.encryption", aliases=("chiffrement",))
    async def encryption(self, ctx: CommandContext) -> None:
        if self._status is None:
            await ctx.reply_t("encryption.disabled")
            return
        state = await self._status.room_encryption(ctx.room_id)
        lines = [ctx.t("encryption.header")]
        if state.encrypted:
            lines.append(ctx.t("encryption.state.on", algorithm=state.algorithm or "?"))
        else:
            lines.append(ctx.t("encryption.state.off"))
        if state.bot_device_id:
            key = "encryption.device.signed" if state.cross_signed else "encryption.device"
            lines.append(ctx.t(key, device=state.bot_device_id))
        if not state.undecryptable:
            lines.append(ctx.t("encryption.undecryptable.none"))
        else:
            lines.append(ctx.t("encryption.undecryptable.header"))
            lines += [
                ctx.t(
                    "encryption.undecryptable.line",
                    sender=d.sender,
                    device=d.device_id,
                    count=d.count,
                    when=_when(d.last_failure_ms),
                )
                for d in state.undecryptable
            ]
        await ctx.reply("\n".join(lines))


class UndecryptableNotifier:
    """Tells the room, in its language, that the bot gave up decrypting a message."""

    def __init__(
        self, translator: Translator, rooms: RoomLanguages, matrix: NoticeSender, default: Lang
    ) -> None:
        self._t = translator
        self._rooms = rooms
        self._matrix = matrix
        self._default = default

    async def __call__(self, room_id: str, sender: str, device_id: str) -> None:
        """Best effort: the event was given up already, so a notice that cannot be sent
        (the bot left, the homeserver is down) must not hold up the room's next events."""
        stored = await self._rooms.language(room_id)
        lang: Lang = stored if is_language(stored) else self._default
        text = self._t.t("encryption.undecryptable.notice", lang, sender=sender, device=device_id)
        try:
            await self._matrix.send_notice(room_id, text, html=to_html(text))
        except Exception as e:
            log.warning("Could not tell %s about an undecryptable message: %s", room_id, e)
