"""Ports: what a capability needs from the outside world or from another capability.

A capability depends on these protocols, never on another capability's classes; the
composition root (``bridge.app``) hands each one the object that fulfils them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from mautrix.util.async_db import Connection

from bridge.core.decision import Decision

Clock = Callable[[], datetime]
InTransaction = Callable[[Connection], Awaitable[object]]
"""Work to do inside another store's database transaction (e.g. plan the removals an
unbinding calls for, so that neither can be committed without the other)."""
EPHEMERAL = "santeguard.ephemeral"
"""Top-level key of pseudo-events made from pushed ephemeral data (read receipts): only
SantéGuard sets it (a room event's top-level keys come from the homeserver)."""
EventHandler = Callable[[dict[str, Any]], Awaitable[bool]]
"""Handles one event; returns whether it called for any work (or, as a guard, refused it)."""


class AuditPort(Protocol):
    async def record(
        self,
        actor: str,
        action: str,
        *,
        room_id: str | None = None,
        subject: str | None = None,
        details: dict[str, Any] | None = None,
        synced: bool | None = None,
    ) -> str: ...


class NoticePort(Protocol):
    bot_mxid: str

    async def send_notice(
        self, room_id: str, text: str, html: str | None = None, *, txn_id: str | None = None
    ) -> str: ...


class MatrixPort(NoticePort, Protocol):
    async def join(self, room_id: str) -> None: ...
    async def power_levels(self, room_id: str) -> dict[str, Any]: ...
    async def room_creators(self, room_id: str) -> tuple[str, ...]: ...


class AlertPort(Protocol):
    """Tells the network admins (admin room and log) about something needing a human."""

    async def alert(self, key: str, /, **params: object) -> None: ...


class RoomLanguagePort(Protocol):
    async def language(self, room_id: str) -> str | None: ...


class Credential(Protocol):
    """What the gate needs to know of a practitioner's verification."""

    @property
    def profession_code(self) -> str | None: ...
    @property
    def valid_until(self) -> datetime: ...
    def is_valid_at(self, when: datetime) -> bool: ...


class CredentialPort(Protocol):
    """Verified accounts, read from memory on the homeserver's path."""

    def verification(self, user_id: str) -> Credential | None: ...


class ZeroTouchPort(Protocol):
    """Verification without an admin (Pro Santé Connect), tried when the gate refuses."""

    async def try_verify(self, user_id: str, *, at_login: bool = False) -> Credential | None: ...


class MemberEnforcerPort(Protocol):
    """Removes members the gate no longer admits, durably.

    ``plan_unbound`` runs inside the transaction that removes a binding and writes the
    removals it calls for (the rooms returned); a worker carries them out until the
    homeserver confirms, across restarts. ``wake`` asks the worker to start now (call
    it once the transaction committed).
    """

    async def plan_unbound(
        self, conn: Connection, user_id: str, *, trigger: str, reason: str | None = None
    ) -> list[str]: ...
    def wake(self) -> None: ...


class RoomRulesPort(Protocol):
    """The gate's view of a room, for capabilities that act on protected rooms."""

    def is_protected(self, room_id: str) -> bool: ...
    def member_decision(self, user_id: str, room_id: str) -> Decision: ...
    def message_decision(self, event: dict[str, Any]) -> Decision: ...


class EncryptionEnforcerPort(Protocol):
    async def ensure_encrypted(self, room_id: str) -> bool: ...


class RoutesPort(Protocol):
    """The event dispatcher's registry: capabilities subscribe to the event types they handle.

    Guards run first and may refuse an event (then no handler sees it); handlers run in
    registration order; ``on_decrypted`` handlers get events the bot's device decrypted.
    ``ignore_own`` skips events sent by SantéGuard's own bot.
    """

    def guard(
        self, event_type: str, handler: EventHandler, *, ignore_own: bool = False
    ) -> None: ...
    def on(self, event_type: str, handler: EventHandler, *, ignore_own: bool = False) -> None: ...
    def on_decrypted(self, event_type: str, handler: EventHandler) -> None: ...
    async def handle_decrypted(self, event: dict[str, Any]) -> bool: ...


class Subscriber(Protocol):
    def subscribe(self, routes: RoutesPort) -> None: ...


class TextPort(Protocol):
    """The text catalog (``bot.i18n.Translator``), as shared modules need it."""

    def t(self, key: str, lang: str, /, **params: object) -> str: ...
    def bilingual(self, key: str, first: str = "fr", /, **params: object) -> str: ...
