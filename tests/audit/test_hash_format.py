"""The fast canonical form is byte for byte the documented ``json.dumps`` one, so logs
written before it keep verifying."""

from __future__ import annotations

import hashlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.audit.chain import GENESIS, canonical_entry, entry_hash


def reference_hash(*fields: object) -> str:
    material = json.dumps(list(fields), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


# Every code point but lone surrogates (which cannot be stored as UTF-8 text at all).
TEXT = st.text(st.characters(exclude_categories=["Cs"]))


@settings(max_examples=400, deadline=None)
@given(
    prev=st.one_of(st.just(GENESIS), TEXT),
    ts=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    actor=TEXT,
    action=TEXT,
    room=st.one_of(st.none(), TEXT),
    subject=st.one_of(st.none(), TEXT),
    details=st.one_of(TEXT, st.dictionaries(TEXT, TEXT).map(json.dumps)),
)
def test_same_bytes_as_json_dumps(
    prev: str,
    ts: int,
    actor: str,
    action: str,
    room: str | None,
    subject: str | None,
    details: str,
) -> None:
    fields = (prev, ts, actor, action, room, subject, details)
    assert canonical_entry(*fields) == json.dumps(
        list(fields), ensure_ascii=False, separators=(",", ":")
    )
    assert entry_hash(*fields) == reference_hash(*fields)


def test_a_known_entry_keeps_its_hash() -> None:
    """Pinned: an entry hashed by the first release of the log."""
    fields = (GENESIS, 1_700_000_000_000, "gate", "gate.refused", "!r:x", '@é"\n:x', "{}")
    assert entry_hash(*fields) == reference_hash(*fields)
    assert entry_hash(*fields) == (
        hashlib.sha256(
            (
                '["' + GENESIS + '",1700000000000,"gate","gate.refused","!r:x","@é\\"\\n:x","{}"]'
            ).encode()
        ).hexdigest()
    )
