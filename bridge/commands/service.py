"""Glue between stored room messages and the command framework.

Each command event is answered at most once per completion: its ID is marked ``done`` in
``bot_command`` after the handler finished, so a replayed or re-dispatched event (after a
crash, or a retry while the homeserver was down) is not answered twice.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from typing import Any, Protocol

from bot.commands import CommandRegistry
from bot.context import BotServices
from bot.dispatcher import CommandDispatcher, Outcome
from bot.parser import parse_invocation
from bot.render import to_html
from bridge.core.ports import AuditPort, MatrixPort, RoomLanguagePort, RoutesPort

log = logging.getLogger("santeguard.bot")


class CommandLogPort(Protocol):
    async def already_done(self, event_id: str) -> bool: ...
    async def mark(self, event_id: str, room_id: str, sender: str, status: str) -> None: ...


class CommandService:
    def __init__(
        self,
        *,
        dispatcher: CommandDispatcher,
        services: BotServices,
        matrix: MatrixPort,
        rooms: RoomLanguagePort,
        audit: AuditPort,
        command_log: CommandLogPort,
    ) -> None:
        self._dispatcher = dispatcher
        self._services = services
        self._matrix = matrix
        self._rooms = rooms
        self._audit = audit
        self._log = command_log

    @property
    def registry(self) -> CommandRegistry:
        """Every command this service answers (framework built-ins and capabilities')."""
        return self._dispatcher.registry

    def subscribe(self, routes: RoutesPort) -> None:
        routes.on("m.room.message", self.on_message, ignore_own=True)
        routes.on_decrypted("m.room.message", self.on_message)

    def looks_like_command(self, content: dict[str, Any]) -> bool:
        """Cheap filter run on every message: text, not an edit, starts with the prefix."""
        body = content.get("body")
        if not isinstance(body, str) or (
            self._dispatcher.prefix not in body  # the common case: no command at all
        ):
            return False
        if content.get("msgtype") != "m.text":
            return False
        relates = content.get("m.relates_to")
        if isinstance(relates, dict) and relates.get("rel_type") == "m.replace":
            return False
        first = body.lstrip()
        if first.startswith("> "):  # reply fallback: the command follows the quote
            first = "\n".join(line for line in body.splitlines() if not line.startswith(">"))
            first = first.lstrip()
        prefix = self._dispatcher.prefix
        return first.startswith(prefix) and (
            len(first) == len(prefix) or first[len(prefix)].isspace()
        )

    async def on_message(self, event: dict[str, Any]) -> bool:
        content = event.get("content") or {}
        if not isinstance(content, dict) or not self.looks_like_command(content):
            return False
        event_id = str(event["event_id"])
        room_id = str(event["room_id"])
        sender = str(event["sender"])
        if await self._log.already_done(event_id):
            log.info("Command %s already answered; not answering again", event_id)
            return True
        await self._log.mark(event_id, room_id, sender, "started")

        # Replies carry transaction IDs derived from the command: if the command runs
        # again (the process died before marking it done, another replica took over),
        # the homeserver returns the first replies instead of posting them twice.
        replies = itertools.count()

        async def reply(text: str) -> None:
            txn = f"sg-reply-{_digest(event_id)}-{next(replies)}"
            await self._matrix.send_notice(room_id, text, html=to_html(text), txn_id=txn)

        power_levels = await self._matrix.power_levels(room_id)
        creators = await self._matrix.room_creators(room_id)
        ctx = self._dispatcher.context(
            sender=sender,
            room_id=room_id,
            event_id=event_id,
            origin_server_ts=_timestamp(event.get("origin_server_ts")),
            reply=reply,
            services=self._services,
            room_language=await self._rooms.language(room_id),
        )
        outcome = await self._dispatcher.run(
            ctx, content["body"], power_levels, room_creators=creators
        )
        await self._log.mark(event_id, room_id, sender, "done")
        invocation = parse_invocation(content["body"], self._dispatcher.prefix)
        # Only the command's name is audited: arguments may name patients or colleagues.
        ran = outcome is Outcome.DONE
        await self._audit.record(
            sender,
            "bot.command" if ran else "bot.command_refused",
            room_id=room_id,
            subject=event_id,
            details={
                "command": invocation.name if invocation else "",
                "outcome": str(outcome or ""),
            },
        )
        return True


def _digest(event_id: str) -> str:
    """A short, URL-safe stand-in for an event ID in transaction IDs."""
    return hashlib.sha256(event_id.encode()).hexdigest()[:24]


def _timestamp(value: object) -> int:
    """The event's ``origin_server_ts`` when it is a JSON integer, else 0: the homeserver
    always sends one, but an odd value must not make the command fail (it was ``int()``)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
