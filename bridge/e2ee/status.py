"""What the bot knows about a room's encryption (plain data: no nio import needed)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UndecryptableDevice:
    """A sender's device whose messages the bot gave up decrypting in one room."""

    sender: str
    device_id: str
    count: int
    last_failure_ms: int


@dataclass(frozen=True, slots=True)
class RoomEncryption:
    """What ``!sg encryption`` reports about one room."""

    encrypted: bool
    algorithm: str | None
    bot_device_id: str | None
    cross_signed: bool
    undecryptable: tuple[UndecryptableDevice, ...]
