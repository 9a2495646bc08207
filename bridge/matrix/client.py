"""Matrix actions through mautrix intents, with homeserver outages mapped to retries."""

from __future__ import annotations

import logging
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
from mautrix.api import Method, Path
from mautrix.appservice import AppServiceAPI, ASStateStore, IntentAPI
from mautrix.client.state_store.memory import MemoryStateStore
from mautrix.errors import MatrixConnectionError, MatrixRequestError, MatrixStandardRequestError
from mautrix.types import EventID, EventType, Membership, RoomID, UserID

from bridge.core.errors import TransientError

log = logging.getLogger("santeguard.matrix")


class _StateStore(MemoryStateStore, ASStateStore):
    """In-memory state cache for the intents (rebuilt from the homeserver on restart)."""

    def __init__(self) -> None:
        MemoryStateStore.__init__(self)
        ASStateStore.__init__(self)


class RoomEncryptor(Protocol):
    """The bot's encrypted device (bridge.e2ee): replies to encrypted rooms go through it."""

    async def is_encrypted(self, room_id: str) -> bool: ...
    async def send_encrypted(
        self,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        txn_id: str | None = None,
    ) -> str: ...


class AppservicePingError(Exception):
    """The homeserver could not ping SantéGuard back (spec v1.7 appservice ping).

    ``status`` is the HTTP status of the homeserver's answer (None if it could not be
    reached), ``errcode`` its Matrix error code (``M_CONNECTION_FAILED``,
    ``M_CONNECTION_TIMEOUT``, ``M_BAD_STATUS``, ``M_URL_NOT_SET``, ``M_FORBIDDEN``, or
    ``M_UNRECOGNIZED`` from a homeserver older than v1.7). Never carries a token.
    """

    def __init__(self, status: int | None, errcode: str, message: str) -> None:
        super().__init__(f"{errcode} ({status if status is not None else 'no answer'}): {message}")
        self.status = status
        self.errcode = errcode
        self.message = message

    @property
    def unsupported(self) -> bool:
        """The homeserver has no ping endpoint: asking again will not help."""
        return self.status in (404, 405) and self.errcode == "M_UNRECOGNIZED"


def _transient(e: Exception) -> bool:
    if isinstance(e, MatrixConnectionError | aiohttp.ClientConnectionError | TimeoutError):
        return True
    if isinstance(e, MatrixRequestError):
        return e.http_status >= 500 or e.http_status == 429
    return False


class MatrixClient:
    """One appservice user's side of the client-server API (``as_token`` + masquerading).

    The bot (the user people talk to, with an E2EE device) is the main client; the
    enforcement user (no device, in every room) is ``as_user(...)`` of it, sharing the
    connection. ``bot_mxid`` is the user this client acts as.
    """

    def __init__(
        self,
        homeserver: str,
        bot_mxid: str,
        as_token: str,
        session: aiohttp.ClientSession,
        bot_displayname: str | None = None,
        *,
        api: AppServiceAPI | None = None,
    ) -> None:
        self.homeserver = homeserver
        self.bot_mxid: str = bot_mxid
        self._session = session
        self._displayname = bot_displayname
        self._as_token = as_token
        self._api = api or AppServiceAPI(
            base_url=homeserver,
            bot_mxid=UserID(bot_mxid),
            token=as_token,
            state_store=_StateStore(),
            client_session=session,
            log=logging.getLogger("santeguard.matrix.as"),  # type: ignore[arg-type]
            default_retry_count=0,
        )
        self.bot: IntentAPI = (
            self._api.bot_intent() if api is None else self._api.intent(UserID(bot_mxid))
        )
        self.encryptor: RoomEncryptor | None = None

    def as_user(self, user_id: str, displayname: str | None = None) -> MatrixClient:
        """A client acting as another user of the appservice's namespace (no encryptor)."""
        return MatrixClient(
            self.homeserver, user_id, self._as_token, self._session, displayname, api=self._api
        )

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            return await coro
        except Exception as e:
            if _transient(e):
                raise TransientError(f"homeserver unavailable during {what}") from e
            raise

    async def ensure_bot(self) -> None:
        """Register this client's user (idempotent) and set its display name."""
        await self._call("bot registration", self.bot.ensure_registered())
        if self._displayname:
            try:
                await self.bot.set_displayname(self._displayname)
            except MatrixStandardRequestError as e:
                log.warning("Could not set the bot's display name: %s", e.errcode)

    async def homeserver_reachable(self) -> bool:
        try:
            url = f"{self.homeserver}/_matrix/client/versions"
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=3)) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def ping_appservice(
        self, appservice_id: str, txn_id: str | None = None, *, timeout: float = 30.0
    ) -> float:
        """Ask the homeserver to ping this appservice back (``POST
        /_matrix/client/v1/appservice/{appserviceId}/ping``); return the round trip it
        measured, in seconds.

        Why: a homeserver that failed to deliver transactions backs off (2, 4, 8, 16 s
        … up to minutes in Synapse) before retrying. When its ping succeeds, Synapse
        retries the pending transactions at once (``force_retry`` in
        synapse/rest/client/appservice_ping.py), so a restarted SantéGuard gets what
        waited during its outage without waiting out the backoff.
        Raises :class:`AppservicePingError`.
        """
        url = f"{self.homeserver}/_matrix/client/v1/appservice/{quote(appservice_id, safe='')}/ping"
        body: dict[str, Any] = {} if txn_id is None else {"transaction_id": txn_id}
        try:
            async with self._session.post(
                url,
                json=body,
                headers={"Authorization": f"Bearer {self._as_token}"},
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                try:
                    data = await resp.json(content_type=None)
                except ValueError:
                    data = None
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as e:
            raise AppservicePingError(None, "M_CONNECTION_FAILED", type(e).__name__) from None
        data = data if isinstance(data, dict) else {}
        if status != 200:
            errcode = str(data.get("errcode") or "M_UNKNOWN")
            message = str(data.get("error") or f"HTTP {status}")[:300]
            raise AppservicePingError(status, errcode, message)
        duration = data.get("duration_ms")
        if not isinstance(duration, int | float) or isinstance(duration, bool):
            raise AppservicePingError(status, "M_BAD_JSON", "no duration_ms in the answer")
        return float(duration) / 1000.0

    async def join(self, room_id: str) -> None:
        await self._call("join", self.bot.join_room_by_id(RoomID(room_id)))

    async def leave(self, room_id: str, reason: str | None = None) -> None:
        await self._call("leave", self.bot.leave_room(RoomID(room_id), reason=reason))

    async def send_notice(
        self,
        room_id: str,
        text: str,
        html: str | None = None,
        *,
        reply_to: str | None = None,
        txn_id: str | None = None,
    ) -> str:
        """Send an ``m.notice`` (a reply to ``reply_to`` if given); empty ``m.mentions`` so
        quoted user text pings nobody. A given ``txn_id`` makes a repeat of the same send
        (after a crash or a failover) return the first event instead of a second one."""
        content: dict[str, Any] = {"msgtype": "m.notice", "body": text, "m.mentions": {}}
        if reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        if html:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = html
        if self.encryptor is not None and await self.encryptor.is_encrypted(room_id):
            return await self.encryptor.send_encrypted(
                room_id, "m.room.message", content, txn_id=txn_id
            )
        event_id = await self._call(
            "send",
            self.bot.send_message_event(
                RoomID(room_id),
                EventType.ROOM_MESSAGE,
                content,  # type: ignore[arg-type]
                txn_id=txn_id,
            ),
        )
        return str(event_id)

    async def room_creators(self, room_id: str) -> tuple[str, ...]:
        """Room v12+ creators (sender + ``additional_creators``), who outrank power levels."""
        try:
            create = await self._call(
                "create event",
                self.bot.get_state_event(RoomID(room_id), EventType.ROOM_CREATE, format="event"),
            )
        except MatrixStandardRequestError:
            return ()
        data = create.serialize() if hasattr(create, "serialize") else dict(create)
        content = data.get("content") or {}
        extra = content.get("additional_creators") or []
        return tuple([str(data.get("sender", "")), *[str(u) for u in extra if isinstance(u, str)]])

    async def encryption_state(self, room_id: str) -> dict[str, Any] | None:
        """The room's ``m.room.encryption`` content, or None if the room is in clear."""
        try:
            content = await self._call(
                "encryption state",
                self.bot.get_state_event(RoomID(room_id), EventType.ROOM_ENCRYPTION),
            )
        except MatrixStandardRequestError as e:
            if e.http_status == 404:
                return None
            raise
        data: dict[str, Any] = (
            content.serialize() if hasattr(content, "serialize") else dict(content)
        )
        return data or None

    async def enable_encryption(self, room_id: str) -> None:
        await self._call(
            "enable encryption",
            self.bot.send_state_event(
                RoomID(room_id),
                EventType.ROOM_ENCRYPTION,
                {"algorithm": "m.megolm.v1.aes-sha2"},  # type: ignore[dict-item]
            ),
        )

    async def displayname(self, user_id: str) -> str | None:
        try:
            name = await self._call("profile", self.bot.get_displayname(UserID(user_id)))
        except MatrixStandardRequestError:
            return None
        return str(name) if name else None

    async def kick(self, room_id: str, user_id: str, reason: str) -> None:
        """Remove a member, or revoke a pending invite (both are a kick in Matrix)."""
        await self._call(
            "kick", self.bot.kick_user(RoomID(room_id), UserID(user_id), reason=reason)
        )

    async def redact(
        self, room_id: str, event_id: str, reason: str, *, txn_id: str | None = None
    ) -> None:
        """Redact an event. A given ``txn_id`` makes a repeat (the same event handled
        again after a crash) return the first redaction instead of sending a second."""
        if txn_id is None:
            await self._call(
                "redact", self.bot.redact(RoomID(room_id), EventID(event_id), reason=reason)
            )
            return
        url = Path.v3.rooms[RoomID(room_id)].redact[EventID(event_id)][txn_id]
        await self._call("redact", self.bot.api.request(Method.PUT, url, {"reason": reason}))

    async def power_levels(self, room_id: str) -> dict[str, Any]:
        """The room's ``m.room.power_levels`` content, fresh from the homeserver."""
        levels = await self._call(
            "power levels",
            self.bot.get_state_event(RoomID(room_id), EventType.ROOM_POWER_LEVELS),
        )
        data: dict[str, Any] = levels.serialize() if hasattr(levels, "serialize") else dict(levels)
        return data

    async def joined_rooms(self) -> list[str]:
        rooms = await self._call("joined rooms", self.bot.get_joined_rooms())
        return [str(r) for r in rooms]

    async def membership(self, room_id: str, user_id: str) -> str | None:
        """The user's current membership in the room, fresh from the homeserver."""
        try:
            content = await self._call(
                "membership",
                self.bot.get_state_event(RoomID(room_id), EventType.ROOM_MEMBER, user_id),
            )
        except MatrixStandardRequestError as e:
            if e.http_status == 404:
                return None
            raise
        data = content.serialize() if hasattr(content, "serialize") else dict(content)
        value = data.get("membership")
        return str(value) if value else None

    async def members(self, room_id: str) -> list[tuple[str, str]]:
        """(user, membership) of everyone joined, invited or knocking, now."""
        events = await self._call(
            "members", self.bot.get_members(RoomID(room_id), not_membership=Membership.LEAVE)
        )
        out: list[tuple[str, str]] = []
        for ev in events:
            membership = str(ev.content.membership)
            if membership in ("join", "invite", "knock"):
                out.append((str(ev.state_key), membership))
        return out

    async def send_event(
        self, room_id: str, event_type: str, content: dict[str, Any], *, txn_id: str | None = None
    ) -> str:
        """Send any room event as this user, in clear (``content`` may already be
        ``m.room.encrypted``). A fixed ``txn_id`` makes a retry return the same event."""
        event_id = await self._call(
            "send",
            self.bot.send_message_event(
                RoomID(room_id),
                EventType.find(event_type, t_class=EventType.Class.MESSAGE),
                content,  # type: ignore[arg-type]
                txn_id=txn_id,
            ),
        )
        return str(event_id)

    async def invite(self, room_id: str, user_id: str) -> None:
        await self._call("invite", self.bot.invite_user(RoomID(room_id), UserID(user_id)))

    async def send_receipt(self, room_id: str, event_id: str) -> None:
        """A public read receipt (``m.read``) on ``event_id``."""
        await self._call("receipt", self.bot.mark_read(RoomID(room_id), EventID(event_id)))

    async def room_name(self, room_id: str) -> str | None:
        try:
            content = await self._call(
                "room name", self.bot.get_state_event(RoomID(room_id), EventType.ROOM_NAME)
            )
        except MatrixStandardRequestError:
            return None
        data = content.serialize() if hasattr(content, "serialize") else dict(content)
        name = data.get("name")
        return str(name) if isinstance(name, str) and name.strip() else None

    async def set_displayname(self, name: str) -> None:
        await self._call("profile", self.bot.set_displayname(name))

    async def state(self, room_id: str, event_type: str) -> dict[str, Any] | None:
        """A room-state event's content (state key ``""``), or None if the room has none."""
        try:
            content = await self._call(
                f"state {event_type}",
                # Never joins to read: a user of SantéGuard's reads only where it is.
                # (IntentAPI's wrapper takes ensure_joined; the typed signature does not.)
                self.bot.get_state_event(  # type: ignore[call-arg]
                    RoomID(room_id),
                    EventType.find(event_type, EventType.Class.STATE),
                    ensure_joined=False,
                ),
            )
        except MatrixStandardRequestError as e:
            if e.http_status == 404:
                return None
            raise
        data: dict[str, Any] = (
            content.serialize() if hasattr(content, "serialize") else dict(content)
        )
        return data or None

    async def set_state(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        event_id = await self._call(
            f"set {event_type}",
            self.bot.send_state_event(
                RoomID(room_id),
                EventType.find(event_type, EventType.Class.STATE),
                content,
                ensure_joined=False,
            ),
        )
        return str(event_id)
