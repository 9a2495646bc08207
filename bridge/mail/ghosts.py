"""Mail correspondents as Matrix users ("ghosts") in the appservice's namespace.

A correspondent ``dr.martin@chu.mssante.fr`` is ``@santeguard_mail_dr.martin=40chu.mssante.fr``
(mautrix-style escaping: readable, reversible, in the namespace SantéGuard owns, and
exempt from the gate like every ``@santeguard_*`` user). The bot invites the ghost into a
linked room and the ghost joins; in an encrypted room the bot's device encrypts what the
ghost sends (Matrix clients show it as sent by the ghost and encrypted by the bridge's
device, as with mautrix bridges). Event transaction IDs are derived from the mail, so
re-posting after a crash returns the event already sent instead of a second one.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Protocol

from bridge.core.errors import TransientError

log = logging.getLogger("santeguard.mail.ghosts")

_SAFE = set("abcdefghijklmnopqrstuvwxyz0123456789._-/")


def ghost_localpart(bot_username: str, address: str) -> str:
    """``<bot>_mail_<escaped address>``: lowercase, with ``=xx`` for any other byte."""
    out = []
    for byte in address.lower().encode("utf-8"):
        ch = chr(byte)
        out.append(ch if ch in _SAFE else f"={byte:02x}")
    return f"{bot_username}_mail_{''.join(out)}"[:200]


def txn_id(message_id: str, part: int) -> str:
    digest = hashlib.sha256(message_id.encode("utf-8")).hexdigest()[:32]
    return f"sgmail.{digest}.{part}"


class GhostMatrix(Protocol):
    bot_mxid: str

    def as_user(self, user_id: str, displayname: str | None = None) -> GhostMatrix: ...
    async def ensure_bot(self) -> None: ...
    async def invite(self, room_id: str, user_id: str) -> None: ...
    async def join(self, room_id: str) -> None: ...
    async def membership(self, room_id: str, user_id: str) -> str | None: ...
    async def send_event(
        self, room_id: str, event_type: str, content: dict[str, Any], *, txn_id: str | None = None
    ) -> str: ...
    async def send_receipt(self, room_id: str, event_id: str) -> None: ...
    async def set_displayname(self, name: str) -> None: ...


class RoomCrypto(Protocol):
    async def is_encrypted(self, room_id: str) -> bool: ...
    async def encrypt(
        self, room_id: str, event_type: str, content: dict[str, Any]
    ) -> dict[str, Any]: ...


class Ghosts:
    def __init__(
        self,
        bot: GhostMatrix,
        crypto: RoomCrypto | None,
        *,
        bot_username: str,
        domain: str,
        enforcer: GhostMatrix | None = None,
    ) -> None:
        self._bot = bot
        self._enforcer = enforcer
        self._crypto = crypto
        self._bot_username = bot_username
        self._domain = domain
        self._registered: dict[str, str] = {}  # ghost → display name set
        self._joined: set[tuple[str, str]] = set()

    def mxid(self, address: str) -> str:
        return f"@{ghost_localpart(self._bot_username, address)}:{self._domain}"

    async def ghost(self, address: str, name: str | None, room_id: str) -> GhostMatrix:
        """The correspondent's ghost, registered, named and joined to the room."""
        user_id = self.mxid(address)
        shown = f"{name} ({address})" if name else address
        client = self._bot.as_user(user_id, shown)
        if self._registered.get(user_id) != shown:
            await client.ensure_bot()
            self._registered[user_id] = shown
        if (room_id, user_id) not in self._joined:
            if await self._bot.membership(room_id, user_id) != "join":
                await self._invite(room_id, user_id)
                await client.join(room_id)
            self._joined.add((room_id, user_id))
        return client

    async def _invite(self, room_id: str, user_id: str) -> None:
        """The bot invites; where the room asks more power to invite than the bot has (a
        public room's preset: 50), the enforcement user, which holds 100 everywhere."""
        try:
            await self._bot.invite(room_id, user_id)
        except TransientError:
            raise
        except Exception as e:
            if self._enforcer is None:
                raise
            log.info(
                "Bot cannot invite %s into %s (%s): the enforcement user does",
                user_id,
                room_id,
                type(e).__name__,
            )
            await self._enforcer.invite(room_id, user_id)

    async def encrypted(self, room_id: str) -> bool:
        return self._crypto is not None and await self._crypto.is_encrypted(room_id)

    async def send(
        self, client: GhostMatrix, room_id: str, content: dict[str, Any], txn: str
    ) -> str:
        """Send ``content`` (an ``m.room.message``) as the ghost, encrypted where the room is."""
        if self._crypto is not None and await self._crypto.is_encrypted(room_id):
            sealed = await self._crypto.encrypt(room_id, "m.room.message", content)
            return await client.send_event(room_id, "m.room.encrypted", sealed, txn_id=txn)
        return await client.send_event(room_id, "m.room.message", content, txn_id=txn)
