"""Synapse's admin API, called as the enforcement user (appservice token + ``user_id``).

Synapse answers an admin API only for a server admin: an appservice user is one only if
an operator made it so (``PUT /_synapse/admin/v1/users/<enforcer>/admin``). A 401/403
raises :class:`AdminForbidden`; an unreachable homeserver or a 5xx/429 raises
:class:`~bridge.core.errors.TransientError`. Shapes follow Synapse 1.163's sources
(``synapse/rest/admin/``). The token never appears in logs or errors (it travels in the
``Authorization`` header), nor does any event content: callers get events back, this
module logs none.

Besides the admin endpoints, :meth:`SynapseAdmin.joined_rooms` and
:meth:`SynapseAdmin.member_state` use the client API as the enforcement user, which is in
every protected room: what the audit can still read without admin rights.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import aiohttp

from bridge.core.errors import TransientError

log = logging.getLogger("santeguard.retention.admin")

ADMIN = "/_synapse/admin"
CLIENT = "/_matrix/client/v3"
ProbeKind = Literal["present", "purged", "forbidden", "error"]
_PAGE = 100


class AdminApiError(Exception):
    """The homeserver refused a request for another reason than rights or availability."""

    def __init__(self, status: int, errcode: str | None, what: str) -> None:
        super().__init__(f"{what}: HTTP {status} {errcode or ''}".strip())
        self.status = status
        self.errcode = errcode


class AdminForbidden(AdminApiError):
    """401/403: the enforcement user is not a server admin (or the token is refused)."""


class NotFound(AdminApiError):
    """404 (unknown room, event, media, delete id)."""


@dataclass(frozen=True, slots=True)
class EventProbe:
    """What ``fetch_event`` says of one event: ``present`` (200), ``purged`` (404),
    ``forbidden`` (401/403, not admin) or ``error`` (anything else, ``detail`` says)."""

    event_id: str
    kind: ProbeKind
    detail: str | None = None
    depth: int | None = None  # present events: their depth in the room's DAG


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """One local upload (``GET /_synapse/admin/v1/users/<id>/media``)."""

    media_id: str
    created_ts: int
    media_type: str
    media_length: int | None
    user_id: str | None
    quarantined: bool

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> MediaInfo:
        length = data.get("media_length")
        return cls(
            media_id=str(data["media_id"]),
            created_ts=int(data.get("created_ts") or 0),
            media_type=str(data.get("media_type") or ""),
            media_length=int(length) if isinstance(length, int) else None,
            user_id=str(data["user_id"]) if data.get("user_id") else None,
            quarantined=bool(data.get("quarantined_by")),
        )


@dataclass(frozen=True, slots=True)
class MessagesPage:
    """One page of admin ``/rooms/<id>/messages``: events (client format) and the token
    of the next page, None at the end of the room."""

    events: list[dict[str, Any]]
    end: str | None


class SynapseAdmin:
    """Admin API client acting as ``user_id`` (the enforcement user) with the AS token."""

    def __init__(
        self,
        homeserver: str,
        as_token: str,
        user_id: str,
        session: aiohttp.ClientSession,
        *,
        timeout_seconds: float = 30,
    ) -> None:
        self.homeserver = homeserver.rstrip("/")
        self.user_id = user_id
        self.server_name = user_id.split(":", 1)[1]
        self._headers = {"Authorization": f"Bearer {as_token}"}
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    def __repr__(self) -> str:  # never the token
        return f"<SynapseAdmin {self.user_id} at {self.homeserver}>"

    async def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        query: dict[str, str | int] = {"user_id": self.user_id, **(params or {})}
        try:
            async with self._session.request(
                method,
                self.homeserver + path,
                params=query,
                json=body if body is not None else ({} if method in ("PUT", "POST") else None),
                headers=self._headers,
                timeout=self._timeout,
            ) as resp:
                status = resp.status
                data = await resp.json(content_type=None) if status != 204 else {}
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            # ValueError: a body that is not JSON (a proxy's error page).
            raise TransientError(f"homeserver unavailable during {what}: {type(e).__name__}") from e
        if status == 200:
            return data
        errcode = data.get("errcode") if isinstance(data, dict) else None
        errcode = str(errcode) if errcode else None
        if status >= 500 or status == 429:
            raise TransientError(f"homeserver unavailable during {what}: HTTP {status}")
        if status in (401, 403):
            raise AdminForbidden(status, errcode, what)
        if status == 404:
            raise NotFound(status, errcode, what)
        raise AdminApiError(status, errcode, what)

    # -- rights ---------------------------------------------------------------------

    async def is_admin(self) -> bool | None:
        """Whether the enforcement user is a server admin; None if the homeserver cannot
        be reached (so "not admin" is never confused with "down")."""
        try:
            data = await self._request(
                "GET", f"{ADMIN}/v1/users/{quote(self.user_id)}/admin", "admin check"
            )
        except AdminForbidden:
            return False
        except TransientError:
            return None
        except AdminApiError as e:
            log.warning("Admin check answered %s", e)
            return False
        return bool(data.get("admin")) if isinstance(data, dict) else False

    # -- events ---------------------------------------------------------------------

    async def fetch_event(self, event_id: str) -> EventProbe:
        """``GET /_synapse/admin/v1/fetch_event/<id>`` (Synapse 1.140+): 200 while the
        event is stored, 404 once purged. Never raises: the outcome is in the probe."""
        try:
            data = await self._request(
                "GET", f"{ADMIN}/v1/fetch_event/{quote(event_id, safe='')}", "fetch_event"
            )
        except NotFound:
            return EventProbe(event_id, "purged")
        except AdminForbidden:
            return EventProbe(event_id, "forbidden")
        except (TransientError, AdminApiError) as e:
            return EventProbe(event_id, "error", str(e))
        event = data.get("event") if isinstance(data, dict) else None
        depth = event.get("depth") if isinstance(event, dict) else None
        return EventProbe(event_id, "present", depth=depth if isinstance(depth, int) else None)

    async def event_purged(self, event_id: str) -> bool:
        """True only on a 404 from ``fetch_event`` (present, forbidden or failing: False)."""
        return (await self.fetch_event(event_id)).kind == "purged"

    async def room_messages(
        self,
        room_id: str,
        *,
        dir: Literal["f", "b"] = "f",
        limit: int = _PAGE,
        from_token: str | None = None,
        raw: bool = False,
    ) -> MessagesPage:
        """Admin ``/rooms/<id>/messages``: no visibility filtering, so events hidden by
        the retention policy but not yet purged are listed. Purged history is not (and
        state events left by a purge are outliers, which pagination skips). ``raw``: the
        federation format, which carries each event's ``depth``."""
        params: dict[str, str | int] = {"dir": dir, "limit": limit}
        if raw:
            params["raw"] = "true"
        if from_token:
            params["from"] = from_token
        data = await self._request(
            "GET",
            f"{ADMIN}/v1/rooms/{quote(room_id, safe='')}/messages",
            "room messages",
            params=params,
        )
        chunk = data.get("chunk") or []
        end = data.get("end")
        events = [dict(ev) for ev in chunk if isinstance(ev, dict)]
        return MessagesPage(events, str(end) if end else None)

    async def room_state(self, room_id: str) -> list[dict[str, Any]]:
        """The room's current state events (``GET /_synapse/admin/v1/rooms/<id>/state``)."""
        data = await self._request(
            "GET", f"{ADMIN}/v1/rooms/{quote(room_id, safe='')}/state", "room state"
        )
        return [dict(ev) for ev in data.get("state") or [] if isinstance(ev, dict)]

    async def rooms(self) -> list[str]:
        """Every room the homeserver knows (``GET /_synapse/admin/v1/rooms``, paginated)."""
        out: list[str] = []
        start = 0
        while True:
            data = await self._request(
                "GET",
                f"{ADMIN}/v1/rooms",
                "room list",
                params={"from": start, "limit": _PAGE, "order_by": "name"},
            )
            out += [str(r["room_id"]) for r in data.get("rooms") or [] if r.get("room_id")]
            nxt = data.get("next_batch")
            if nxt is None or int(nxt) <= start:
                return list(dict.fromkeys(out))
            start = int(nxt)

    # -- rooms: delete / purge --------------------------------------------------------

    async def delete_room(
        self, room_id: str, *, message: str | None = None, purge: bool = True
    ) -> str:
        """``DELETE /_synapse/admin/v2/rooms/<id>``: remove local members (telling them
        ``message``), then purge the room if asked. Returns the delete id."""
        body: dict[str, Any] = {"purge": purge, "block": False}
        if message:
            body["message"] = message
        data = await self._request(
            "DELETE", f"{ADMIN}/v2/rooms/{quote(room_id, safe='')}", "room delete", body=body
        )
        return str(data["delete_id"])

    async def delete_status(self, delete_id: str) -> str:
        """Status of a room delete: Synapse 1.163 answers its task status, ``scheduled``,
        ``active``, ``complete``, ``failed`` (older releases: ``shutting_down``,
        ``purging``). Unknown delete ids raise :class:`NotFound`."""
        data = await self._request(
            "GET", f"{ADMIN}/v2/rooms/delete_status/{quote(delete_id, safe='')}", "delete status"
        )
        return str(data.get("status"))

    async def purge_history(self, room_id: str, *, up_to_ts: int) -> str:
        """``POST /_synapse/admin/v1/purge_history/<room>``: purge (local events too)
        everything before the last event received at or before ``up_to_ts``. Returns the
        purge id. A room with no event that old raises :class:`NotFound`."""
        data = await self._request(
            "POST",
            f"{ADMIN}/v1/purge_history/{quote(room_id, safe='')}",
            "purge history",
            body={"delete_local_events": True, "purge_up_to_ts": up_to_ts},
        )
        return str(data["purge_id"])

    async def purge_status(self, purge_id: str) -> str:
        """``active``, ``complete`` or ``failed``."""
        data = await self._request(
            "GET", f"{ADMIN}/v1/purge_history_status/{quote(purge_id, safe='')}", "purge status"
        )
        return str(data.get("status"))

    # -- media ----------------------------------------------------------------------

    async def users_with_media(self, *, until_ts: int | None = None) -> list[str]:
        """Local users who uploaded media (created before ``until_ts`` if given), from
        ``GET /_synapse/admin/v1/statistics/users/media``."""
        out: list[str] = []
        start = 0
        while True:
            params: dict[str, str | int] = {"from": start, "limit": _PAGE}
            if until_ts is not None:
                params["until_ts"] = max(until_ts, 1)
            data = await self._request(
                "GET", f"{ADMIN}/v1/statistics/users/media", "media statistics", params=params
            )
            out += [str(u["user_id"]) for u in data.get("users") or [] if u.get("user_id")]
            nxt = data.get("next_token")
            if nxt is None or int(nxt) <= start:
                return out
            start = int(nxt)

    async def user_media(self, user_id: str) -> list[MediaInfo]:
        """Every upload of a local user, oldest first (paginated)."""
        out: list[MediaInfo] = []
        start = 0
        while True:
            data = await self._request(
                "GET",
                f"{ADMIN}/v1/users/{quote(user_id)}/media",
                "user media",
                params={"from": start, "limit": _PAGE, "order_by": "created_ts", "dir": "f"},
            )
            out += [MediaInfo.of(m) for m in data.get("media") or [] if m.get("media_id")]
            nxt = data.get("next_token")
            if nxt is None or int(nxt) <= start:
                return out
            start = int(nxt)

    async def delete_media(self, server_name: str, media_id: str) -> bool:
        """``DELETE /_synapse/admin/v1/media/<server>/<id>``; True once it is gone (an
        unknown media is gone too)."""
        try:
            data = await self._request(
                "DELETE",
                f"{ADMIN}/v1/media/{quote(server_name, safe='')}/{quote(media_id, safe='')}",
                "media delete",
            )
        except NotFound:
            return True
        return media_id in (data.get("deleted_media") or [])

    async def user_avatar(self, user_id: str) -> str | None:
        """The user's profile avatar (``mxc://``), from ``GET /_synapse/admin/v2/users/<id>``."""
        try:
            data = await self._request("GET", f"{ADMIN}/v2/users/{quote(user_id)}", "user")
        except NotFound:
            return None
        url = data.get("avatar_url")
        return str(url) if isinstance(url, str) and url else None

    # -- what a non-admin enforcement user can still read -------------------------------

    async def joined_rooms(self) -> list[str]:
        """Rooms the enforcement user is joined to (client API)."""
        data = await self._request("GET", f"{CLIENT}/joined_rooms", "joined rooms")
        return [str(r) for r in data.get("joined_rooms") or []]

    async def member_state(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> dict[str, Any] | None:
        """One state event's content as a member sees it (client API), None if unset."""
        try:
            data = await self._request(
                "GET",
                f"{CLIENT}/rooms/{quote(room_id, safe='')}/state/{quote(event_type, safe='')}"
                f"/{quote(state_key, safe='')}",
                "room state",
            )
        except NotFound:
            return None
        return dict(data) if isinstance(data, dict) else None
