"""Which writes may skip their own fsync: those a replay would make again.

A stored transaction's events are handled, then the transaction is marked done. Whatever
a handler writes (ledger rows, memberships, audit entries of what it did) is written
again if the event is handled again, and an event is handled again whenever its
transaction was not durably marked done. On SQLite a power cut can only take back a
suffix of the WAL's commits (each frame's checksum covers the ones before it), so losing
such a write also loses the later done mark: the event is replayed and the write made
again, exactly as after a crash a moment earlier. Those writes therefore need not pay an
fsync each (``bridge.db.sqlite_writer``, "synced later"); the next synced commit, or the
writer's timer, puts them on disk. PostgreSQL also recovers a prefix of its WAL: there
they commit with ``synchronous_commit = off`` (``bridge.db.txn.write_transaction``). The
dispatcher marks its handler calls ``replayable``; writers read it when a call does not
say.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_REPLAYABLE: ContextVar[bool] = ContextVar("santeguard_replayable", default=False)


@contextmanager
def replayable() -> Iterator[None]:
    """Writes made inside (and by tasks started inside) are redone by a replay."""
    token = _REPLAYABLE.set(True)
    try:
        yield
    finally:
        _REPLAYABLE.reset(token)


def needs_sync(synced: bool | None) -> bool:
    """``synced`` if the caller said; else whether the current context is not replayable."""
    return not _REPLAYABLE.get() if synced is None else synced
