"""Dead-lettering that cannot fail on content, and the text sanitiser for logs.

An event whose attempts are used up goes to the ``dead_letter`` table. The store keeps
its identifiers and error text as ``storable_text`` (valid UTF-8 as written, anything else
as its ASCII JSON escape), so no content can make the insert raise; logs here use the same
rule (``safe``). An unreachable database is retried like an outage; any other failure of
the write, ``DEAD_LETTER_TRIES`` times, gives the event up with an ERROR log naming its
ID, type and room (never its content), so nothing makes a room loop forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bridge.core.errors import TransientError
from bridge.ops.metrics import Metrics
from bridge.spine.dispatch.model import Backoff, Item, QueueStore, Room
from bridge.spine.queue import storable_text

log = logging.getLogger("santeguard.dispatch")

DEAD_LETTER_TRIES = 3  # failed dead-letter writes (database reachable) before giving up

# Runs a database call to its end even if the caller is cancelled (``DispatchState.db``).
DbCall = Callable[[Awaitable[None]], Awaitable[None]]


def safe(value: object, limit: int = 255) -> str:
    """Identifiers and error text for logs: never fails to encode, bounded in length."""
    return storable_text(value, limit)


class DeadLetters:
    """Writes a room's head event to the dead letters (``room.dead_error`` says why)."""

    def __init__(self, store: QueueStore, metrics: Metrics, db: DbCall, backoff: Backoff):
        self._store = store
        self._metrics = metrics
        self._db = db
        self._backoff = backoff
        self._count_failed = metrics.handled.labels(outcome="failed")

    async def write(self, room: Room, item: Item) -> float | None:
        """Write the dead letter: None once the event is done with (kept, or given up),
        else the delay before trying again (the caller counts the retry)."""
        ev = item.event
        try:
            await self._db(
                self._store.dead_letter(
                    item.txn_seq, ev, room.attempts, room.dead_error or "unknown"
                )
            )
        except asyncio.CancelledError:
            raise
        except TransientError:
            room.outage += 1
            delay = self._backoff(room.outage)
            log.warning("Database unavailable for a dead letter; retrying in %.1f s", delay)
            return delay
        except Exception as e:
            room.dl_failures += 1
            if room.dl_failures >= DEAD_LETTER_TRIES:
                log.error(
                    "Giving up on event %s (%s) in %s after %d attempts: its dead letter "
                    "could not be written either (%s)",
                    safe(ev.get("event_id")),
                    safe(ev.get("type")),
                    safe(room.room_id),
                    room.attempts,
                    type(e).__name__,
                )
                self._metrics.events_abandoned.inc()
                self._count_failed.inc()
                return None
            log.warning("Could not record dead letter (%s); retrying", type(e).__name__)
            return self._backoff(room.dl_failures)
        log.error(
            "Event %s (%s) in %s failed %d times; kept in the dead letters",
            safe(ev.get("event_id")),
            safe(ev.get("type")),
            safe(room.room_id),
            room.attempts,
        )
        self._count_failed.inc()
        return None
