"""Verifying the sealed log, as a pure function: every kind of tampering is found, and
where; an intact, a pruned and a not-yet-sealed log pass."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bridge.audit.chain import GENESIS, entry_hash
from bridge.audit.seal import Checkpoint, sign, trusted_keys
from bridge.audit.verify import (
    DAY_MS,
    PRUNED_ACTION,
    Anchor,
    Sourced,
    VerifyReport,
    pruned_details,
    verify_log,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
TRUSTED = trusted_keys([KEY.public_key()])
T0 = 1_750_000_000_000  # entries' time
NOW = T0 + 400 * DAY_MS
Row = list[Any]  # seq, ts, actor, action, room_id, subject, details, prev_hash, hash


def _rehash(row: Row) -> None:
    row[8] = entry_hash(row[7], row[1], row[2], row[3], row[4], row[5], row[6])


def make_rows(n: int, *, first_seq: int = 1, start: str = GENESIS, ts0: int = T0) -> list[Row]:
    rows: list[Row] = []
    prev = start
    for i in range(n):
        seq = first_seq + i
        details = json.dumps({"reason": "not_verified", "n": seq}, sort_keys=True)
        row: Row = [seq, ts0 + seq * 1000, "gate", "gate.refused", f"!r{seq % 3}:x",
                    f"@u{seq}:x", details, prev, ""]  # fmt: skip
        _rehash(row)
        prev = row[8]
        rows.append(row)
    return rows


def seal(rows: list[Row], seq: int, *, base: int = 0, key: Ed25519PrivateKey = KEY) -> Checkpoint:
    """A checkpoint of entry ``seq`` (``base``: entries pruned before the first row)."""
    index = next(i for i, r in enumerate(rows) if r[0] == seq)
    row = rows[index]
    return sign(key, seq, row[8], row[1], base + index + 1, row[1] + 500)


@dataclass
class Case:
    rows: list[Row]
    db: list[Checkpoint]
    file: list[Checkpoint]
    anchor: Anchor | None = None
    extra: list[Sourced] = field(default_factory=list)

    def verify(self, file_read: bool = True) -> VerifyReport:
        sourced = [Sourced(c, "db") for c in self.db]
        sourced += [Sourced(c, f"file:{i}") for i, c in enumerate(self.file, start=1)]
        return verify_log(
            [tuple(r) for r in self.rows],
            sourced + self.extra,
            self.anchor,
            trusted=TRUSTED,
            now_ms=NOW,
            file_read=file_read,
        )


def base_case() -> Case:
    """12 entries, checkpoints of 4, 8 and 10 in the database and the file; 11 and 12
    not sealed yet."""
    rows = make_rows(12)
    cps = [seal(rows, s) for s in (4, 8, 10)]
    return Case(rows, list(cps), list(cps))


def kinds(report: VerifyReport) -> list[tuple[str, int | None]]:
    return [(f.kind, f.seq) for f in report.findings]


def test_intact_log_passes() -> None:
    report = base_case().verify()
    assert report.ok and report.findings == [] and report.warnings == []
    assert (report.entries, report.first_seq, report.last_seq) == (12, 1, 12)
    assert report.checkpoints == 3
    assert report.last_checkpoint is not None and report.last_checkpoint.seq == 10
    assert report.unsealed == 2


def test_empty_log_without_checkpoints_passes() -> None:
    report = Case([], [], []).verify()
    assert report.ok and report.entries == 0 and report.last_seq is None


# -- tampering, each found where it happened --------------------------------------------


def edit_details(c: Case) -> None:
    c.rows[4][6] = '{"n":5,"reason":"ok"}'


def edit_ts(c: Case) -> None:
    c.rows[4][1] += 1


def edit_and_rehash_one(c: Case) -> None:
    c.rows[4][6] = '{"n":5,"reason":"ok"}'
    _rehash(c.rows[4])


def rewrite_chain_after_edit(c: Case) -> None:
    """An editor who recomputes every hash after the edit: only the checkpoints see it."""
    c.rows[4][6] = '{"n":5,"reason":"ok"}'
    for i in range(4, len(c.rows)):
        c.rows[i][7] = c.rows[i - 1][8]
        _rehash(c.rows[i])


def delete_middle(c: Case) -> None:
    del c.rows[4]  # seq 5


def delete_sealed_entry(c: Case) -> None:
    del c.rows[7]  # seq 8, which a checkpoint sealed


def delete_first(c: Case) -> None:
    del c.rows[0:2]


def truncate_sealed(c: Case) -> None:
    del c.rows[8:]  # 9..12: the checkpoint of 10 covered 9 and 10


def truncate_all(c: Case) -> None:
    c.rows.clear()


def swap_two(c: Case) -> None:
    """Exchange the entries stored as seq 6 and 7 (their seq numbers swapped)."""
    a, b = c.rows[5], c.rows[6]
    a[0], b[0] = b[0], a[0]
    c.rows[5], c.rows[6] = b, a


def forge_checkpoint(c: Case) -> None:
    """A checkpoint claiming another head, with the old signature."""
    c.file[2] = replace(c.file[2], head_hash="f" * 64)


def foreign_key(c: Case) -> None:
    c.db[1] = seal(c.rows, 8, key=OTHER_KEY)


def rewind_db(c: Case) -> None:
    """The database's owner deletes entries 5.. and the checkpoints that sealed them; the
    file keeps them."""
    del c.rows[4:]
    del c.db[1:]


def rewrite_db_checkpoint(c: Case) -> None:
    """Re-signed with the key (the owner has it) for a rewritten chain: the file differs."""
    rewrite_chain_after_edit(c)
    c.db = [seal(c.rows, 4), seal(c.rows, 8), seal(c.rows, 10)]


CASES: dict[str, tuple[Callable[[Case], None], list[tuple[str, int | None]]]] = {
    "edit-details": (edit_details, [("edited", 5)]),
    "edit-ts": (edit_ts, [("edited", 5)]),
    "edit-and-rehash": (edit_and_rehash_one, [("gap", 6)]),
    "rewrite-chain": (
        rewrite_chain_after_edit,
        [("checkpoint_mismatch", 8), ("checkpoint_mismatch", 10)],
    ),
    "delete-middle": (delete_middle, [("gap", 6), ("checkpoint_count", 8)]),
    "delete-sealed": (
        delete_sealed_entry,
        [("checkpoint_entry_missing", 8), ("gap", 9), ("checkpoint_count", 10)],
    ),
    "delete-first": (delete_first, [("gap", 3), ("checkpoint_count", 4)]),
    "truncate": (truncate_sealed, [("truncated", 10)]),
    "truncate-all": (truncate_all, [("truncated", 10)]),
    "swap": (swap_two, [("moved", 7), ("out_of_order", 8)]),
    "forged-signature": (forge_checkpoint, [("forged", 10)]),
    "unknown-key": (foreign_key, [("unknown_key", 8), ("missing_from_db", 8)]),
    "db-rewound": (
        rewind_db,
        [("missing_from_db", 8), ("missing_from_db", 10), ("truncated", 10)],
    ),
    "db-checkpoints-rewritten": (
        rewrite_db_checkpoint,
        [
            ("missing_from_db", 8),
            ("missing_from_db", 10),
            ("checkpoint_conflict", 8),
            ("checkpoint_mismatch", 8),
            ("checkpoint_conflict", 10),
            ("checkpoint_mismatch", 10),
        ],
    ),
}


@pytest.mark.parametrize(("tamper", "expected"), CASES.values(), ids=CASES.keys())
def test_tampering_is_found_and_located(
    tamper: Callable[[Case], None], expected: list[tuple[str, int | None]]
) -> None:
    case = base_case()
    assert case.verify().ok
    tamper(case)
    report = case.verify()
    assert not report.ok
    assert sorted(kinds(report)) == sorted(expected)


def test_locations_name_the_neighbours() -> None:
    case = base_case()
    delete_middle(case)
    (gap,) = [f for f in case.verify().findings if f.kind == "gap"]
    assert gap.params == {"prev": 4}
    case = base_case()
    truncate_sealed(case)
    (cut,) = case.verify().findings
    assert cut.params == {"last": 8, "missing": 2}
    case = base_case()
    rewrite_chain_after_edit(case)
    first = case.verify().findings[0]
    assert (first.seq, first.params) == (8, {"since": 4})
    case = base_case()
    swap_two(case)
    moved, after = case.verify().findings
    assert (moved.seq, moved.params, after.seq, after.params) == (7, {"before": 6}, 8, {"after": 6})


def test_deleting_unsealed_entries_is_the_documented_blind_spot() -> None:
    """Entries after the last checkpoint can be cut unnoticed: what checkpoints bound."""
    case = base_case()
    del case.rows[10:]
    report = case.verify()
    assert report.ok and report.unsealed == 0


def test_db_checkpoint_missing_from_the_file_is_a_warning() -> None:
    case = base_case()
    del case.file[2:]  # the file lost the last line (or is an older copy)
    report = case.verify()
    assert report.ok
    assert [(w.kind, w.seq) for w in report.warnings] == [("not_in_file", 10)]
    assert case.verify(file_read=False).warnings == []


# -- pruning ----------------------------------------------------------------------------


def pruned_case(*, prune_age_days: int = 365) -> Case:
    """Entries 1..12 appended a year ago; 1..6 pruned (anchor 6), then entry 13 records
    the pruning; checkpoints of 4 (now pruned), 8, 10 and 13."""
    rows = make_rows(12)
    anchor = Anchor(seq=6, hash=rows[5][8], count=6, ts=rows[5][1])
    pruned_at = rows[5][1] + prune_age_days * DAY_MS
    details = json.dumps({**pruned_details(anchor), "pruned": 6, "keep_days": prune_age_days})
    entry: Row = [13, pruned_at, "santeguard", PRUNED_ACTION, None, None, details, rows[-1][8], ""]
    _rehash(entry)
    rows.append(entry)
    cps = [seal(rows, s) for s in (4, 8, 10, 13)]
    cps[-1] = sign(KEY, 13, entry[8], entry[1], 13, entry[1] + 1000)
    kept = rows[6:]
    return Case(kept, list(cps), list(cps), anchor=anchor)


def test_pruned_log_still_verifies() -> None:
    report = pruned_case().verify()
    assert report.ok, report.findings
    assert (report.entries, report.first_seq, report.checkpoints_pruned) == (7, 7, 1)
    assert report.checkpoints == 3 and report.unsealed == 0


def _edit_after_pruning(c: Case) -> None:
    c.rows[2][6] = '{"n":9,"reason":"ok"}'


def _move_anchor(c: Case) -> None:
    """Delete two more entries and move the anchor over them: no pruning entry says so."""
    assert c.anchor is not None
    del c.rows[:2]
    c.anchor = Anchor(seq=8, hash=c.rows[0][7], count=8, ts=c.rows[0][1])


def _change_anchor_hash(c: Case) -> None:
    assert c.anchor is not None
    c.anchor = replace(c.anchor, hash="e" * 64)


def _delete_pruning_entry(c: Case) -> None:
    c.rows.pop()


PRUNED_CASES: dict[str, tuple[Callable[[Case], None], list[tuple[str, int | None]]]] = {
    "edit": (_edit_after_pruning, [("edited", 9)]),
    "anchor-moved": (_move_anchor, [("anchor_unexplained", 8)]),
    "anchor-hash": (_change_anchor_hash, [("gap", 7), ("anchor_unexplained", 6)]),
    "pruning-entry-deleted": (
        _delete_pruning_entry,
        [("truncated", 13), ("anchor_unexplained", 6)],
    ),
}


@pytest.mark.parametrize(("tamper", "expected"), PRUNED_CASES.values(), ids=PRUNED_CASES.keys())
def test_tampering_after_pruning_is_found(
    tamper: Callable[[Case], None], expected: list[tuple[str, int | None]]
) -> None:
    case = pruned_case()
    tamper(case)
    assert sorted(kinds(case.verify())) == sorted(expected)


def test_pruning_younger_than_six_months_is_found() -> None:
    """A "pruning" that removed two-month-old entries: sealed after the fact or not."""
    report = pruned_case(prune_age_days=60).verify()
    assert kinds(report) == [("pruned_too_recent", 6)]
    assert report.findings[0].params == {"days": 60}
