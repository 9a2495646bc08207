"""Per-room ordered dispatch of stored events, with bounded concurrency and bounded memory.

Events are handled only once their transaction is committed: the intake hands the
committed transaction over in memory (``Dispatcher.submit``), and at start the dispatcher
reads back whatever was stored but not done, so what was acked is handled after a crash
too. See docs/architecture.md, "Dispatch".

**Order and slots** (``rooms``). Within a room events are handled strictly in order, by
one worker per room; at most ``max_concurrent_rooms`` workers hold a slot at a time, and
only while they call handlers. A failing event is retried with backoff outside the slot;
once its attempts are used up it is dead-lettered (``dead_letter``), which cannot fail on
content and gives up after a few failed writes, so nothing can make a room loop forever.

**Bounded memory** (``backlog``, ``readback``). At most ``max_in_memory_events`` events
are held in memory; the database holds the rest (every transaction is stored before it is
acked) and is read back in sequence order as room queues drain. A room whose next event is
failing holds only that event's transaction: its later events are *spilled*, left in the
database while everything else moves on, and read back once its head event is handled.

**Done marks** (``state``, ``dispatcher``). A transaction is marked done once all its
events are handled, in batches; after a crash, the events of transactions not yet marked
done are handled again (handlers with side effects are idempotent).

**Stuck rooms** (``stuck``). A room whose head event has been failing for
``stuck_after_seconds`` is counted, listed by ``Dispatcher.stuck_rooms()`` (``/ready``)
and reported once per episode to ``on_stuck``.

Transactions are assumed to commit in sequence order, which holds because the homeserver
sends an application service one transaction at a time; one that commits after a later one
was taken in is still handled, in arrival order.
"""

from bridge.spine.dispatch.dispatcher import Dispatcher
from bridge.spine.dispatch.model import (
    DEAD_LETTER,
    ERROR,
    UNAVAILABLE,
    EventHandler,
    OnStuck,
    QueueStore,
    StuckRoom,
)

__all__ = [
    "DEAD_LETTER",
    "ERROR",
    "UNAVAILABLE",
    "Dispatcher",
    "EventHandler",
    "OnStuck",
    "QueueStore",
    "StuckRoom",
]
