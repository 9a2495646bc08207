"""The audit log's hash chain, as pure functions: how an entry is hashed and checked.

Each entry's hash covers the previous entry's hash and the entry's canonical JSON, so
editing, deleting or reordering any stored entry breaks the chain from that point on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64


def entry_hash(
    prev_hash: str,
    ts: int,
    actor: str,
    action: str,
    room_id: str | None,
    subject: str | None,
    details_json: str,
) -> str:
    """Pure: the chained hash of one entry."""
    material = json.dumps(
        [prev_hash, ts, actor, action, room_id, subject, details_json],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainCheck:
    ok: bool
    entries: int
    first_bad_seq: int | None = None


def check_chain(rows: Sequence[Any]) -> ChainCheck:
    """Recompute the chain over stored rows (in ``seq`` order, each indexable by column
    name); name the first bad entry."""
    prev_hash = GENESIS
    for r in rows:
        expected = entry_hash(
            prev_hash,
            int(r["ts"]),
            r["actor"],
            r["action"],
            r["room_id"],
            r["subject"],
            r["details"],
        )
        if r["prev_hash"] != prev_hash or r["hash"] != expected:
            return ChainCheck(False, len(rows), int(r["seq"]))
        prev_hash = expected
    return ChainCheck(True, len(rows))
