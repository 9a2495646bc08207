"""What the dispatcher's parts share: the store it reads, callbacks, rooms and items.

``Room`` carries both a room's queue and the failure episode of its head event, because
the queue (``rooms``), the backlog (``backlog``, ``readback``) and stuck reporting
(``stuck``) all decide from both.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from bridge.spine.intake import IntakeActivity
from bridge.spine.queue import StoredTxn

# Returns True when the event called for work (its latency is then recorded).
EventHandler = Callable[[dict[str, Any]], Awaitable[bool]]
# on_stuck(room_id, event_type, error_kind, since): once per stuck episode of a room.
OnStuck = Callable[[str, str, str, float], Awaitable[None]]

SLICE = 64  # events handled per slot hold, before yielding the loop

# Why a room's head event is failing (StuckRoom.error_kind, on_stuck's error_kind).
UNAVAILABLE: Final = "unavailable"  # TransientError: a dependency is down
ERROR: Final = "error"  # the handler raised; attempts are being used up
DEAD_LETTER: Final = "dead_letter"  # attempts used up, the dead letter could not be written


class QueueStore(Protocol):
    @property
    def intake(self) -> IntakeActivity: ...
    async def pending(
        self, after_seq: int, limit: int = 50, until_seq: int | None = None
    ) -> list[StoredTxn]: ...
    async def mark_done(self, seqs: list[int]) -> None: ...
    async def dead_letter(
        self, txn_seq: int, event: dict[str, Any], attempts: int, error: str
    ) -> None: ...
    async def depth(self) -> int: ...


@dataclass(frozen=True, slots=True)
class StuckRoom:
    """A room whose next event has been failing for longer than ``stuck_after_seconds``.

    Text fields are safe to log and serialise (``storable_text``); none holds content.
    """

    room_id: str
    event_id: str
    event_type: str
    error_kind: str  # UNAVAILABLE, ERROR or DEAD_LETTER
    since: float  # Unix time of the first failure of this event
    retries: int  # failed tries of this event so far


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff: ``base`` seconds doubling up to ``cap``."""

    base: float
    cap: float

    def __call__(self, n: int) -> float:
        """The delay before the ``n``-th retry (``n`` >= 1)."""
        return min(self.cap, self.base * float(2 ** min(n - 1, 16)))


@dataclass(slots=True, eq=False)
class TxnProgress:
    remaining: int  # events counted here and not yet handled
    others: frozenset[str] = frozenset()  # the txn's rooms whose events are counted elsewhere


@dataclass(slots=True)
class Item:
    txn_seq: int
    event: dict[str, Any]
    progress: TxnProgress = field(repr=False)


@dataclass(slots=True, eq=False)
class Room:
    room_id: str
    queue: deque[Item] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None
    # Spilled: this room's events in stored transactions after db_after (up to the
    # frontier) are in the database only; those up to db_after are in memory or handled.
    spilled: bool = False
    db_after: int = 0
    # The failure episode of the head event.
    attempts: int = 0
    outage: int = 0
    dl_failures: int = 0
    dead_error: str | None = None
    failing_since: float | None = None  # monotonic
    failing_since_wall: float = 0.0
    error_kind: str = ""
    retries: int = 0
    delay: float = 0.0
    reported: bool = False
