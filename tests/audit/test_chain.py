"""The hash chain as pure functions: every edit, deletion or swap is found, and where."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bridge.audit.chain import GENESIS, check_chain, entry_hash

Row = dict[str, Any]


def _chain(n: int) -> list[Row]:
    rows: list[Row] = []
    prev = GENESIS
    for i in range(1, n + 1):
        row: Row = {
            "seq": i,
            "ts": 1_700_000_000_000 + i,
            "actor": "gate",
            "action": "gate.refused.user_may_join_room",
            "room_id": f"!r{i % 3}:x",
            "subject": f"@u{i}:x",
            "details": '{"reason":"not_verified"}',
            "prev_hash": prev,
        }
        row["hash"] = entry_hash(
            prev, row["ts"], row["actor"], row["action"], row["room_id"], row["subject"],
            row["details"],
        )  # fmt: skip
        prev = row["hash"]
        rows.append(row)
    return rows


def _edit(rows: list[Row]) -> None:
    rows[2]["subject"] = "@someone-else:x"


def _delete(rows: list[Row]) -> None:
    del rows[2]


def _swap(rows: list[Row]) -> None:
    rows[2], rows[3] = rows[3], rows[2]


def _rehash_one(rows: list[Row]) -> None:
    """Editing and recomputing that entry's own hash still breaks the next link."""
    r = rows[2]
    r["details"] = '{"reason":"edited"}'
    r["hash"] = entry_hash(
        r["prev_hash"], r["ts"], r["actor"], r["action"], r["room_id"], r["subject"], r["details"]
    )


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        pytest.param(_edit, 3, id="edit"),
        pytest.param(_delete, 4, id="delete"),
        pytest.param(_swap, 4, id="swap"),
        pytest.param(_rehash_one, 4, id="edit-and-rehash"),
    ],
)
def test_tampering_is_found_where_it_happened(
    tamper: Callable[[list[Row]], None], first_bad: int
) -> None:
    rows = _chain(6)
    assert check_chain(rows).ok
    tamper(rows)
    check = check_chain(rows)
    assert not check.ok and check.first_bad_seq == first_bad and check.entries == len(rows)


def test_empty_and_intact_chains() -> None:
    assert check_chain([]).ok and check_chain([]).entries == 0
    assert check_chain(_chain(50)).entries == 50
