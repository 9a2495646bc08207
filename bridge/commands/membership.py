"""The bot's own membership: it joins rooms it is invited to, says what that means, and
leaves when asked. It reads a room only where someone asked it in (least privilege:
the enforcement user, which sits in every room, has no E2EE device)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from bot.commands import Permission, command
from bot.context import CommandContext
from bot.render import to_html
from bridge.commands.rooms import RoomStore
from bridge.core.ports import AuditPort, MatrixPort, RoutesPort, TextPort

log = logging.getLogger("santeguard.bot")

JoinHook = Callable[[str], Awaitable[object]]


class RoomKindPort(Protocol):
    def is_admin_room(self, room_id: str) -> bool: ...


class LeavePort(MatrixPort, Protocol):
    async def leave(self, room_id: str, reason: str | None = None) -> None: ...


class BotMembership:
    """``on_joined`` hooks run once the bot joined a room (e.g. forced encryption)."""

    def __init__(
        self,
        matrix: LeavePort,
        rooms: RoomStore,
        audit: AuditPort,
        text: TextPort,
        kinds: RoomKindPort,
        *,
        prefix: str,
        default_language: str,
        on_joined: Sequence[JoinHook] = (),
    ) -> None:
        self._matrix = matrix
        self._rooms = rooms
        self._audit = audit
        self._text = text
        self._kinds = kinds
        self._prefix = prefix
        self._default = default_language
        self._on_joined = tuple(on_joined)

    def subscribe(self, routes: RoutesPort) -> None:
        routes.on("m.room.member", self.on_member)

    async def on_member(self, event: dict[str, Any]) -> bool:
        if event.get("state_key") != self._matrix.bot_mxid:
            return False
        content = event.get("content") or {}
        membership = content.get("membership")
        room_id = str(event["room_id"])
        if membership == "invite":
            await self._matrix.join(room_id)
            await self._rooms.set_joined(room_id, True)
            await self._audit.record(
                self._matrix.bot_mxid, "bot.joined", room_id=room_id, subject=event.get("sender")
            )
            log.info("Joined %s on invitation by %s", room_id, event.get("sender"))
            key = "bot.joined_admin_room" if self._kinds.is_admin_room(room_id) else "bot.joined"
            lang = await self._rooms.language(room_id) or self._default
            text = self._text.t(key, lang, prefix=self._prefix)
            await self._matrix.send_notice(room_id, text, html=to_html(text))
            for hook in self._on_joined:
                await hook(room_id)
        elif membership == "join":
            await self._rooms.set_joined(room_id, True)
        elif membership in ("leave", "ban"):
            await self._rooms.set_joined(room_id, False)
            await self._audit.record(
                self._matrix.bot_mxid,
                f"bot.{membership}",
                room_id=room_id,
                subject=event.get("sender"),
            )
        return True

    @command(
        "leave", "help.description.leave", permission=Permission.ROOM_ADMIN, aliases=("quitter",)
    )
    async def leave(self, ctx: CommandContext) -> None:
        await ctx.reply_t("bot.leaving")
        await self._matrix.leave(ctx.room_id, reason=f"{ctx.prefix} leave ({ctx.sender})")
        await self._rooms.set_joined(ctx.room_id, False)
        await self._audit.record(ctx.sender, "bot.asked_to_leave", room_id=ctx.room_id)
