"""Which capability handles which event: a registry filled at start, not an if-chain.

Capabilities subscribe (``subscribe(routes)``) to the event types they handle. For one
event, guards run first, in registration order, and the first that refuses it (returns
True) ends its handling; then every handler runs, in registration order. Events the
bot's device decrypted are handed to the ``on_decrypted`` handlers of their clear type.
The type ``"*"`` subscribes to every event (its guards and handlers run first).
"""

from __future__ import annotations

from typing import Any

from bridge.core.ports import EPHEMERAL, EventHandler

_Entry = tuple[EventHandler, bool]  # handler, ignore_own
ANY = "*"


class EventRoutes:
    """Implements :class:`~bridge.core.ports.RoutesPort` for the dispatcher."""

    def __init__(self, *own_users: str) -> None:
        self._own = frozenset(own_users)
        self._guards: dict[str, list[_Entry]] = {}
        self._handlers: dict[str, list[_Entry]] = {}
        self._decrypted: dict[str, list[EventHandler]] = {}

    def guard(self, event_type: str, handler: EventHandler, *, ignore_own: bool = False) -> None:
        self._guards.setdefault(event_type, []).append((handler, ignore_own))

    def on(self, event_type: str, handler: EventHandler, *, ignore_own: bool = False) -> None:
        self._handlers.setdefault(event_type, []).append((handler, ignore_own))

    def on_decrypted(self, event_type: str, handler: EventHandler) -> None:
        self._decrypted.setdefault(event_type, []).append(handler)

    def event_types(self) -> frozenset[str]:
        """Every event type something subscribed to (for docs and tests)."""
        return frozenset(self._guards) | frozenset(self._handlers) | frozenset(self._decrypted)

    async def handle(self, event: dict[str, Any]) -> bool:
        """Handle one stored event; return whether it called for any work."""
        event_type = event.get("type")
        if not isinstance(event_type, str):
            return False
        own = event.get("sender") in self._own
        # Guards judge room content; pushed ephemeral data (receipts) carries none.
        guarded = () if event.get(EPHEMERAL) else (ANY, event_type)
        for guards in (self._guards.get(t, ()) for t in guarded):
            for handler, ignore_own in guards:
                if not (own and ignore_own) and await handler(event):
                    return True
        acted = False
        for handlers in (self._handlers.get(ANY, ()), self._handlers.get(event_type, ())):
            for handler, ignore_own in handlers:
                if not (own and ignore_own) and await handler(event):
                    acted = True
        return acted

    async def handle_decrypted(self, event: dict[str, Any]) -> bool:
        acted = False
        for handler in self._decrypted.get(str(event.get("type")), ()):
            if await handler(event):
                acted = True
        return acted
