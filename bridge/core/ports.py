"""What services need from the outside world, as protocols (adapters implement them)."""

from __future__ import annotations

from typing import Any, Protocol


class MatrixPort(Protocol):
    bot_mxid: str

    async def join(self, room_id: str) -> None: ...
    async def send_notice(self, room_id: str, text: str, html: str | None = None) -> str: ...
    async def power_levels(self, room_id: str) -> dict[str, Any]: ...
    async def room_creators(self, room_id: str) -> tuple[str, ...]: ...


class RoomPort(Protocol):
    async def set_joined(self, room_id: str, joined: bool) -> None: ...
    async def language(self, room_id: str) -> str | None: ...
    async def set_language(self, room_id: str, language: str) -> None: ...
    async def count_joined(self) -> int: ...


class AuditPort(Protocol):
    async def record(
        self,
        actor: str,
        action: str,
        *,
        room_id: str | None = None,
        subject: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> str: ...
