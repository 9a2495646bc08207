"""Sealing the audit log: signed checkpoints of its head, and pruning that keeps it
verifiable.

``checkpoint()`` signs the head (last entry's seq, hash and time, and the number of
entries since the first), stores it in ``audit_checkpoint``, appends it to the
checkpoint file (fsync) and posts it to the admin room; nothing is made when the head has
not moved. A checkpoint whose posting failed is posted again by the next run. Before
signing, the entry the last checkpoint sealed must still be there with the same hash:
otherwise the log was cut or rewritten, no new seal is made (it would cover the damage)
and the admins are told.

``prune(keep_days)`` removes the entries older than ``keep_days`` from the start of the
chain. It first records an ``audit.pruned`` entry naming the last pruned entry (seq,
hash, time) and the total pruned, then deletes those entries and moves the anchor in one
transaction, then makes a checkpoint: ``verify`` starts the chain from the anchor and
accepts it only if that entry vouches for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mautrix.util.async_db import Database

from bot.i18n import Translator
from bridge.audit import store
from bridge.audit.log import AuditLog
from bridge.audit.seal import Checkpoint, sign, to_line
from bridge.audit.text import CATALOG
from bridge.audit.verify import DAY_MS, PRUNED_ACTION, Anchor, pruned_details
from bridge.db.txn import write_transaction

log = logging.getLogger("santeguard.audit")

Post = Callable[[str], Awaitable[object]]


class AuditSealError(Exception):
    """The log no longer matches its last checkpoint: nothing is signed."""


@dataclass(frozen=True, slots=True)
class PruneResult:
    anchor: Anchor
    pruned: int


def format_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class AuditSealer:
    def __init__(
        self,
        db: Database,
        audit_log: AuditLog,
        key: Ed25519PrivateKey,
        checkpoint_file: str | Path,
        post: Post | None = None,
        *,
        translator: Translator | None = None,
        lang: str = "fr",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.audit_log = audit_log
        self._key = key
        self.checkpoint_file = Path(checkpoint_file)
        self._post = post
        self._text = translator or Translator(CATALOG)
        self._lang = lang
        self._clock = clock
        self._lock = asyncio.Lock()
        self._alerted_seq: int | None = None

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def checkpoint(self) -> Checkpoint | None:
        """Seal the current head; None when it has not moved since the last checkpoint."""
        async with self._lock:
            made = await self._checkpoint()
            await self._post_unposted()
            return made

    async def _checkpoint(self) -> Checkpoint | None:
        db = self.db
        head = await db.fetchrow("SELECT seq, hash, ts FROM audit_log ORDER BY seq DESC LIMIT 1")
        if head is None:
            return None
        seq, head_hash, head_ts = int(head["seq"]), str(head["hash"]), int(head["ts"])
        last = await store.last_checkpoint(db)
        if last is not None:
            if last.seq == seq and last.head_hash == head_hash:
                return None
            await self._still_sealed(last)
        anchor = await store.read_anchor(db)
        floor, base = (anchor.seq, anchor.count) if anchor else (0, 0)
        kept = await db.fetchval(
            "SELECT COUNT(*) FROM audit_log WHERE seq > $1 AND seq <= $2", floor, seq
        )
        cp = sign(self._key, seq, head_hash, head_ts, base + int(kept), self._now_ms())
        await store.insert_checkpoint(db, cp)
        await asyncio.to_thread(store.append_checkpoint_file, self.checkpoint_file, cp)
        log.info("Audit log sealed at entry %d (%d entries since the start)", cp.seq, cp.count)
        return cp

    async def _still_sealed(self, last: Checkpoint) -> None:
        """The entry the last checkpoint sealed must be there, unchanged (or pruned)."""
        anchor = await store.read_anchor(self.db)
        if anchor is not None and last.seq <= anchor.seq:
            return
        stored = await self.db.fetchval("SELECT hash FROM audit_log WHERE seq = $1", last.seq)
        if stored == last.head_hash:
            return
        if self._alerted_seq != last.seq and self._post is not None:
            self._alerted_seq = last.seq
            try:
                await self._post(self._text.t("audit.seal.refused", self._lang, seq=last.seq))
            except Exception:
                log.warning("Could not tell the admin room that the audit log was cut")
        raise AuditSealError(
            f"audit log entry {last.seq}, sealed by the last checkpoint, is gone or changed: "
            "run `santeguard audit verify`"
        )

    async def _post_unposted(self) -> None:
        if self._post is None:
            return
        for cp in await store.unposted_checkpoints(self.db):
            text = self._text.t(
                "audit.checkpoint.notice",
                self._lang,
                seq=cp.seq,
                count=cp.count,
                hash=cp.head_hash[:16],
                time=format_time(cp.ts),
                key=cp.key_id,
                line=to_line(cp),
            )
            try:
                await self._post(text)
            except Exception as e:
                log.warning(
                    "Could not post audit checkpoint %d to the admin room (%s); retried at "
                    "the next checkpoint",
                    cp.seq,
                    type(e).__name__,
                )
                return
            await store.mark_posted(self.db, cp.seq, self._now_ms())

    async def prune(self, keep_days: int) -> PruneResult | None:
        """Remove the entries older than ``keep_days`` days, keeping the log verifiable;
        None when there is nothing to prune."""
        async with self._lock:
            result = await self._prune(keep_days)
        if result is not None:
            await self.checkpoint()
        return result

    async def _prune(self, keep_days: int) -> PruneResult | None:
        db = self.db
        cutoff = self._now_ms() - keep_days * DAY_MS
        anchor = await store.read_anchor(db)
        floor, base = (anchor.seq, anchor.count) if anchor else (0, 0)
        first_kept = await db.fetchval("SELECT MIN(seq) FROM audit_log WHERE ts >= $1", cutoff)
        bound = "" if first_kept is None else " AND seq < $2"
        args = [floor] if first_kept is None else [floor, int(first_kept)]
        through = await db.fetchrow(
            f"SELECT seq, hash, ts FROM audit_log WHERE seq > $1{bound} ORDER BY seq DESC LIMIT 1",
            *args,
        )
        if through is None:
            return None
        through_seq = int(through["seq"])
        pruned = int(
            await db.fetchval(
                "SELECT COUNT(*) FROM audit_log WHERE seq > $1 AND seq <= $2", floor, through_seq
            )
        )
        new = Anchor(
            seq=through_seq, hash=str(through["hash"]), count=base + pruned, ts=int(through["ts"])
        )
        # The entry that vouches for the new anchor comes first: if the deletion below
        # never happens, it only names a pruning that did not take place.
        await self.audit_log.record(
            "santeguard",
            PRUNED_ACTION,
            details={**pruned_details(new), "pruned": pruned, "keep_days": keep_days},
        )
        async with write_transaction(db) as conn:
            await conn.execute("DELETE FROM audit_log WHERE seq <= $1", through_seq)
            await conn.execute(
                "INSERT INTO audit_anchor (id, seq, hash, count, ts, pruned_at) "
                "VALUES (1, $1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET "
                "seq = excluded.seq, hash = excluded.hash, count = excluded.count, "
                "ts = excluded.ts, pruned_at = excluded.pruned_at",
                new.seq,
                new.hash,
                new.count,
                new.ts,
                self._now_ms(),
            )
        log.info("Audit log pruned: %d entries older than %d days", pruned, keep_days)
        return PruneResult(new, pruned)
