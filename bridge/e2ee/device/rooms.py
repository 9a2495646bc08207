"""Which rooms need encrypted replies.

Only "encrypted" is remembered: encryption can never be turned off in a room, while a
remembered "clear" could be stale (the room just encrypted by someone else, or by the
gate) and would leak a reply in clear.
"""

from __future__ import annotations

from nio import AsyncClient

from bridge.e2ee.http import HomeserverApi, q


class EncryptedRooms:
    def __init__(self, api: HomeserverApi, user_id: str, as_token: str) -> None:
        self._api = api
        self._user_id = user_id
        self._as_token = as_token
        self._encrypted: set[str] = set()

    def note(self, room_id: str) -> None:
        """The room is encrypted (seen ``m.room.encryption`` or an encrypted event)."""
        self._encrypted.add(room_id)

    async def is_encrypted(self, room_id: str, client: AsyncClient | None, token: str) -> bool:
        """Remembered, known to nio's sync, or else asked of the homeserver every time."""
        if room_id in self._encrypted:
            return True
        room = client.rooms.get(room_id) if client is not None else None
        if (room is not None and room.encrypted) or (
            await self.algorithm(room_id, token)
        ) is not None:
            self.note(room_id)
            return True
        return False

    async def algorithm(self, room_id: str, token: str) -> str | None:
        """The room's ``m.room.encryption`` algorithm, asked of the homeserver (and noted).

        Asked with the device's ``token`` once it has one, before that as the appservice.
        """
        params = None if token else {"user_id": self._user_id}
        status, content = await self._api.request(
            "GET",
            f"/rooms/{q(room_id)}/state/m.room.encryption/",
            token=token or self._as_token,
            params=params,
            ok=(200, 404),
        )
        if status == 404:
            return None
        self.note(room_id)
        return str(content.get("algorithm") or "")
