"""Alerts for the network admins: in the log always, and in the admin room if configured.

Alerts are text-catalog keys rendered in both languages (the admin room has no single
reader); a failure to post never hides the alert, which is in the log first.
"""

from __future__ import annotations

import logging

from bridge.core.ports import NoticePort, TextPort

log = logging.getLogger("santeguard.alerts")


class AdminAlerts:
    def __init__(
        self,
        matrix: NoticePort,
        text: TextPort,
        *,
        admin_room: str | None,
        language: str = "fr",
    ) -> None:
        self._matrix = matrix
        self._text = text
        self._room = admin_room
        self._lang = language

    async def alert(self, key: str, /, **params: object) -> None:
        text = self._text.bilingual(key, self._lang, **params)
        log.warning("ALERT: %s", text)
        if self._room:
            try:
                await self._matrix.send_notice(self._room, text)
            except Exception:
                log.exception("Could not post the alert to the admin room")
