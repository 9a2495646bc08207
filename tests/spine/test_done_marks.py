"""Done marks and the pruning of handled transactions.

A done mark changes the status only ('pending' -> 'handled', the same length), so SQLite
overwrites the row in place instead of writing the whole ~60 KB body to the WAL again
(measured: 3.5 MB of WAL for 50 production transactions before, 0.2 MB after). Handled
transactions are deleted ``keep_done_seconds`` after they were received; pending ones
never; rows marked 'done' by earlier versions are handled too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from mautrix.util.async_db import Database, Scheme

from bridge.spine.queue import EventQueueStore
from tests.helpers import message_event


def _body(t: int, pad: int = 0) -> bytes:
    events = [message_event("!r:x", t * 10)]
    events[0]["content"]["padding"] = "x" * pad  # the size of a production transaction
    return json.dumps({"events": events}).encode()


@pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)
async def test_a_done_mark_does_not_write_the_body_again(db: Database) -> None:
    store = EventQueueStore(db)
    await store.open()
    try:
        seqs = []
        for t in range(20):
            seq = await store.store_transaction(f"big{t}", _body(t, 60_000), 1)
            assert seq is not None
            seqs.append(seq)
        await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        wal = Path(db.url.path + "-wal")
        before = wal.stat().st_size  # noqa: ASYNC240 (a test's stat, not a server's)
        await store.mark_done(seqs)
        written = wal.stat().st_size - before  # noqa: ASYNC240
        # The bodies are 1.2 MB; rewriting them would write at least as much.
        assert written < 20 * 60_000 // 4, written
        assert await db.fetchval("SELECT COUNT(*) FROM txn WHERE status = 'handled'") == 20
    finally:
        await store.close()


async def test_prune_deletes_handled_transactions_by_age_only(db: Database) -> None:
    store = EventQueueStore(db)
    await store.open()
    try:
        seq_of = {}
        for name in ("old-handled", "old-pending", "new-handled", "old-done-v1"):
            seq = await store.store_transaction(name, _body(len(seq_of)), 1)
            assert seq is not None
            seq_of[name] = seq
        hour_ago = int(time.time() * 1000) - 3_600_000
        for name in ("old-handled", "old-pending", "old-done-v1"):
            await db.execute(
                "UPDATE txn SET received_at = $1 WHERE seq = $2", hour_ago, seq_of[name]
            )
        await store.mark_done([seq_of["old-handled"], seq_of["new-handled"]])
        # As an earlier version marked it.
        await db.execute(
            "UPDATE txn SET status = 'done', done_at = $1 WHERE seq = $2",
            hour_ago,
            seq_of["old-done-v1"],
        )
        if store.writer is not None and db.scheme == Scheme.SQLITE:
            await store.writer.wal_on_disk()
        assert await store.prune_done(older_than_ms=600_000) == 2
        left = {r["txn_id"] for r in await db.fetch("SELECT txn_id FROM txn")}
        assert left == {"old-pending", "new-handled"}
        assert await store.prune_done(older_than_ms=0) == 1  # the new one once it is old
        left = {r["txn_id"] for r in await db.fetch("SELECT txn_id FROM txn")}
        assert left == {"old-pending"}  # never a pending one, however old
    finally:
        await store.close()
