"""Verifying the audit log against its signed checkpoints and its pruning anchor (pure).

What is found, and where:

- ``edited``: an entry whose content no longer matches its own hash;
- ``gap``: the chain breaks between two entries and the missing link never shows up:
  entries were deleted there (or the earlier one rewritten with a recomputed hash);
- ``moved`` / ``out_of_order``: the missing link shows up elsewhere: entries reordered;
- ``truncated``: a checkpoint covers entries that are no longer in the log;
- ``checkpoint_entry_missing`` / ``checkpoint_mismatch`` / ``checkpoint_count``: the
  entry a checkpoint sealed is gone, has another hash (the chain was recomputed after an
  edit: somewhere between the last matching checkpoint and this one), or the number of
  entries up to it changed;
- ``forged`` / ``unknown_key``: a checkpoint whose signature does not verify under the
  configured key(s);
- ``missing_from_db`` / ``checkpoint_conflict``: the database's checkpoints disagree with
  the file (the database was rewound);
- ``anchor_unexplained`` / ``pruned_too_recent``: the pruning anchor has no matching
  ``audit.pruned`` entry, or pruning removed entries younger than six months.

Rows are streamed (``LogVerifier.feed``), so a million entries need no more memory than
a page of them; the loop is kept tight (about 3 µs an entry).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bridge.audit.chain import GENESIS
from bridge.audit.config import MIN_KEEP_DAYS
from bridge.audit.seal import Checkpoint, signature_state

ROW_COLUMNS = ("seq", "ts", "actor", "action", "room_id", "subject", "details", "prev_hash", "hash")
"""The order of the values in each row given to the verifier."""
SELECT_COLUMNS = ", ".join(ROW_COLUMNS)
PRUNED_ACTION = "audit.pruned"
DAY_MS = 86_400_000
MAX_FINDINGS = 200
_RING = 8  # recent hashes kept to tell a reordering from a deletion


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where the pruned log starts: the last pruned entry and the total pruned."""

    seq: int
    hash: str
    count: int
    ts: int  # the last pruned entry's timestamp


@dataclass(frozen=True, slots=True)
class Sourced:
    """A checkpoint and where it was read: ``"db"`` or ``"file:<line>"``."""

    checkpoint: Checkpoint
    source: str


@dataclass(frozen=True)
class Finding:
    kind: str
    seq: int | None
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "seq": self.seq, **self.params}


@dataclass
class VerifyReport:
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    anchor: Anchor | None = None
    checkpoints: int = 0  # valid checkpoints checked against the log
    checkpoints_pruned: int = 0  # valid checkpoints of entries pruned since
    last_checkpoint: Checkpoint | None = None
    unsealed: int = 0  # entries after the last valid checkpoint
    findings: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    more_findings: bool = False  # more than MAX_FINDINGS; the first ones are listed

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "anchor": None if self.anchor is None else vars_of(self.anchor),
            "checkpoints": self.checkpoints,
            "checkpoints_pruned": self.checkpoints_pruned,
            "last_checkpoint": (
                None if self.last_checkpoint is None else self.last_checkpoint.to_json()
            ),
            "unsealed": self.unsealed,
            "findings": [f.to_json() for f in self.findings],
            "warnings": [w.to_json() for w in self.warnings],
            "more_findings": self.more_findings,
        }


def vars_of(anchor: Anchor) -> dict[str, Any]:
    return {"seq": anchor.seq, "hash": anchor.hash, "count": anchor.count, "ts": anchor.ts}


def pruned_details(anchor: Anchor) -> dict[str, Any]:
    """What the ``audit.pruned`` entry that explains ``anchor`` records."""
    return {
        "through_seq": anchor.seq,
        "through_hash": anchor.hash,
        "through_ts": anchor.ts,
        "pruned_total": anchor.count,
    }


def _middle(actor: str, action: str, room: str | None) -> str:
    """The canonical JSON of an entry's actor, action and room (see ``chain``)."""
    return f"{encode_basestring(actor)},{encode_basestring(action)}," + (
        "null" if room is None else encode_basestring(room)
    )


def _sort_key(f: Finding) -> tuple[int, str]:
    return (-1 if f.seq is None else f.seq, f.kind)


class LogVerifier:
    """Feed the log's rows in ``seq`` order (each a sequence in ``ROW_COLUMNS`` order),
    then ``finish()``. ``checkpoints`` are those of the database and of the file
    (``file_read`` says whether a file was read: without one, nothing is "missing from
    the file")."""

    def __init__(
        self,
        checkpoints: Sequence[Sourced],
        trusted: Mapping[str, Ed25519PublicKey],
        anchor: Anchor | None = None,
        *,
        now_ms: int,
        file_read: bool = True,
    ) -> None:
        self._report = VerifyReport(anchor=anchor)
        self._anchor = anchor
        self._now_ms = now_ms
        self._base_count = anchor.count if anchor else 0
        self._prev = anchor.hash if anchor else GENESIS
        self._prev_seq = anchor.seq if anchor else 0
        self._count = 0
        self._sealed_count = 0  # entries up to the last valid checkpoint
        self._count_delta = 0  # checkpoints' count minus the log's, as last found
        self._wanted: dict[str, int] = {}  # a broken link's missing predecessor → its seq
        self._found: set[str] = set()  # missing predecessors that turned up later
        self._ring_hash: list[str] = [""] * _RING
        self._ring_seq: list[int] = [0] * _RING
        self._pruned_entries: list[tuple[int, int, str]] = []
        self._moved: set[int] = set()
        self._out_of_order: list[tuple[int, int]] = []
        self._gaps: list[tuple[int, int, str]] = []
        self._encoded: dict[tuple[str, str, str | None], str] = {}
        self._valid = self._valid_checkpoints(checkpoints, trusted, file_read)
        floor = self._prev_seq
        self._before = [c for c in self._valid if c.seq < floor]
        self._pending = [c for c in self._valid if c.seq > floor]
        self._report.checkpoints_pruned = len(self._before)
        for cp in (c for c in self._valid if c.seq == floor):
            if anchor is None or cp.head_hash != anchor.hash or cp.count != anchor.count:
                self.add("checkpoint_mismatch", cp.seq, since=0)
            else:
                self._sealed(cp, 0)
        self._i = 0
        self._next_cp: float = self._pending[0].seq if self._pending else math.inf
        self._last_good = floor

    # -- findings ---------------------------------------------------------------------

    def add(self, kind: str, seq: int | None, **params: Any) -> None:
        if len(self._report.findings) >= MAX_FINDINGS:
            self._report.more_findings = True
            return
        self._report.findings.append(Finding(kind, seq, params))

    def warn(self, kind: str, seq: int | None, **params: Any) -> None:
        self._report.warnings.append(Finding(kind, seq, params))

    def _sealed(self, cp: Checkpoint, count: int) -> None:
        self._report.checkpoints += 1
        last = self._report.last_checkpoint
        if last is None or cp.seq >= last.seq:
            self._report.last_checkpoint = cp
            self._sealed_count = count

    def _valid_checkpoints(
        self,
        sourced: Sequence[Sourced],
        trusted: Mapping[str, Ed25519PublicKey],
        file_read: bool,
    ) -> list[Checkpoint]:
        """The distinct checkpoints whose signature verifies, by ``seq``; every forged one,
        every one in the file but not in the database, and every conflict is a finding."""
        sources: dict[Checkpoint, list[str]] = {}
        for s in sourced:
            sources.setdefault(s.checkpoint, []).append(s.source)
        valid: list[Checkpoint] = []
        for cp, where in sources.items():
            state = signature_state(cp, trusted)
            if state != "ok":
                kind = "forged" if state == "forged" else "unknown_key"
                self.add(kind, cp.seq, source=where[0], key=cp.key_id)
                continue
            valid.append(cp)
            in_db = "db" in where
            in_file = any(w.startswith("file:") for w in where)
            if in_file and not in_db:
                self.add("missing_from_db", cp.seq, source=where[0])
            elif file_read and not in_file:
                self.warn("not_in_file", cp.seq)
        valid.sort(key=lambda c: (c.seq, c.ts))
        for a, b in itertools.pairwise(valid):
            if a.seq == b.seq:
                self.add("checkpoint_conflict", a.seq)
        return valid

    # -- the loop ---------------------------------------------------------------------

    def feed(self, rows: Iterable[Any]) -> None:
        sha = hashlib.sha256
        enc = encode_basestring
        prev, prev_seq, n, next_cp = self._prev, self._prev_seq, self._count, self._next_cp
        wanted, ring_hash, ring_seq = self._wanted, self._ring_hash, self._ring_seq
        first = self._report.first_seq
        encoded = self._encoded
        if len(encoded) > 100_000:
            encoded.clear()
        for row in rows:
            seq, ts, actor, action, room, subject, details, prev_hash, h = row
            try:
                # Actor, action and room repeat: their encoding is looked up, not redone.
                middle = encoded.get((actor, action, room))
                if middle is None:
                    middle = encoded[(actor, action, room)] = _middle(actor, action, room)
                material = (
                    f"[{enc(prev_hash)},{ts},{middle},"
                    f"{'null' if subject is None else enc(subject)},{enc(details)}]"
                )
                own_ok = sha(material.encode("utf-8")).hexdigest() == h
            except (TypeError, UnicodeEncodeError):
                own_ok = False
            if not own_ok:
                self.add("edited", seq)
            if prev_hash != prev:
                self._broken(seq, prev_seq, prev_hash)
            if wanted and h in wanted:
                self._moved.add(seq)
                self._found.add(h)
                self.add("moved", seq, before=wanted.pop(h))
            n += 1
            if seq >= next_cp:
                next_cp = self._reach_checkpoint(seq, h, n, prev_seq)
            if action == PRUNED_ACTION:
                self._pruned_entries.append((seq, ts, details))
            ring_hash[n % _RING] = h
            ring_seq[n % _RING] = seq
            prev, prev_seq = h, seq
            if first is None:
                first = seq
        self._prev, self._prev_seq, self._count, self._next_cp = prev, prev_seq, n, next_cp
        self._report.first_seq = first

    def _broken(self, seq: int, prev_seq: int, prev_hash: str) -> None:
        """``seq`` does not chain onto the entry before it: is its predecessor nearby
        (reordered), still to come (moved earlier), or nowhere (deleted)?"""
        for h, s in zip(self._ring_hash, self._ring_seq, strict=True):
            if h == prev_hash and h:
                self._out_of_order.append((seq, s))
                return
        if len(self._wanted) < 10 * MAX_FINDINGS:
            self._wanted[prev_hash] = seq
        self._gaps.append((seq, prev_seq, prev_hash))

    def _reach_checkpoint(self, seq: int, h: str, n: int, prev_seq: int) -> float:
        pending = self._pending
        while self._i < len(pending) and pending[self._i].seq < seq:
            self.add("checkpoint_entry_missing", pending[self._i].seq, after=prev_seq)
            self._i += 1
        while self._i < len(pending) and pending[self._i].seq == seq:
            cp = pending[self._i]
            expected = cp.count - self._base_count
            if cp.head_hash != h:
                self.add("checkpoint_mismatch", seq, since=self._last_good)
            else:
                self._last_good = seq
                self._sealed(cp, n)
            # One finding per change of the difference, not one per later checkpoint.
            if expected - n != self._count_delta:
                self._count_delta = expected - n
                self.add("checkpoint_count", seq, expected=expected, found=n)
            self._i += 1
        return pending[self._i].seq if self._i < len(pending) else math.inf

    # -- the end ----------------------------------------------------------------------

    def finish(self) -> VerifyReport:
        report = self._report
        report.entries = self._count
        report.last_seq = self._prev_seq if self._count else None
        left = self._pending[self._i :]
        if left:
            top = left[-1]
            report_last = self._prev_seq
            missing = top.count - self._base_count - self._count
            self.add("truncated", top.seq, last=report_last, missing=max(missing, 1))
        for seq, prev_seq, prev_hash in self._gaps:
            if prev_hash in self._found:  # its predecessor turned up later: moved
                continue
            self.add("gap", seq, prev=prev_seq)
        for seq, after in self._out_of_order:
            if seq not in self._moved:
                self.add("out_of_order", seq, after=after)
        self._check_anchor()
        report.unsealed = self._count - self._sealed_count
        report.findings.sort(key=_sort_key)
        report.warnings.sort(key=_sort_key)
        return report

    def _check_anchor(self) -> None:
        anchor = self._anchor
        if anchor is None:
            return
        expected = pruned_details(anchor)
        entry = None
        for seq, ts, details in self._pruned_entries:
            try:
                recorded = json.loads(details)
            except ValueError:
                continue
            if isinstance(recorded, dict) and all(
                recorded.get(k) == v for k, v in expected.items()
            ):
                entry = (seq, ts)
        if entry is None:
            self.add("anchor_unexplained", anchor.seq)
            return
        # Pruning may only remove entries older than six months: judged against the first
        # checkpoint signed after the pruning (or now), whose time the pruner cannot choose.
        after = [c.ts for c in self._valid if c.seq >= entry[0]]
        reference = min(after) if after else self._now_ms
        limit = reference - MIN_KEEP_DAYS * DAY_MS
        sealed_ts = [c for c in self._before if c.head_ts > limit]
        if anchor.ts > limit or sealed_ts:
            newest = max([anchor.ts, *(c.head_ts for c in sealed_ts)])
            self.add("pruned_too_recent", anchor.seq, days=max(0, (reference - newest) // DAY_MS))


def verify_log(
    rows: Iterable[Sequence[Any]],
    checkpoints: Sequence[Sourced],
    anchor: Anchor | None,
    *,
    trusted: Mapping[str, Ed25519PublicKey],
    now_ms: int,
    file_read: bool = True,
) -> VerifyReport:
    """Check every entry, every checkpoint and the anchor; list every problem found."""
    verifier = LogVerifier(checkpoints, trusted, anchor, now_ms=now_ms, file_read=file_read)
    verifier.feed(rows)
    return verifier.finish()
