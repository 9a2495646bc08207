"""The sealer on SQLite and PostgreSQL: checkpoints in the table, the file and the admin
room; nothing re-signed when the head has not moved; no seal over a cut log; pruning that
keeps the log verifiable."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mautrix.util.async_db import Database

from bridge.audit.log import AuditLog
from bridge.audit.seal import from_line, trusted_keys
from bridge.audit.sealer import AuditSealer, AuditSealError
from bridge.audit.store import read_checkpoint_file, read_checkpoints, verify_database
from bridge.audit.verify import PRUNED_ACTION

KEY = Ed25519PrivateKey.from_private_bytes(b"k" * 32)
TRUSTED = trusted_keys([KEY.public_key()])


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Room:
    """The admin room as the sealer sees it: ``post`` (which can be made to fail)."""

    def __init__(self) -> None:
        self.notices: list[str] = []
        self.down = False

    async def post(self, text: str) -> None:
        if self.down:
            raise ConnectionError("homeserver unreachable")
        self.notices.append(text)


async def _record(log: AuditLog, n: int, start: int = 0) -> None:
    await asyncio.gather(
        *(
            log.record("gate", "gate.allowed", room_id="!r:x", subject=f"@u{i}:x", details={"i": i})
            for i in range(start, start + n)
        )
    )


def _sealer(db: Database, tmp_path: Path, room: Room | None = None) -> AuditSealer:
    log = AuditLog(db)
    return AuditSealer(
        db, log, KEY, tmp_path / "checkpoints.jsonl", room.post if room else None, lang="en"
    )


async def _verify(
    db: Database, tmp_path: Path, now_ms: int | None = None
) -> list[tuple[str, int | None]]:
    import time

    now = now_ms if now_ms is not None else int(time.time() * 1000)
    report = await verify_database(db, TRUSTED, tmp_path / "checkpoints.jsonl", now_ms=now)
    return [(f.kind, f.seq) for f in report.findings]


async def test_checkpoints_go_to_the_table_the_file_and_the_room(
    db: Database, tmp_path: Path
) -> None:
    room = Room()
    sealer = _sealer(db, tmp_path, room)
    assert await sealer.checkpoint() is None  # an empty log: nothing to seal
    await _record(sealer.audit_log, 30)
    cp = await sealer.checkpoint()
    assert cp is not None and (cp.count, cp.key_id) == (
        30,
        trusted_keys([KEY.public_key()]).popitem()[0],
    )
    assert await sealer.checkpoint() is None  # the head did not move
    await _record(sealer.audit_log, 5, start=30)
    second = await sealer.checkpoint()
    assert second is not None and second.count == 35 and second.seq > cp.seq
    assert await read_checkpoints(db) == [cp, second]
    lines = (tmp_path / "checkpoints.jsonl").read_text().splitlines()
    assert [from_line(x) for x in lines] == [cp, second]
    assert stat.S_IMODE((tmp_path / "checkpoints.jsonl").stat().st_mode) & 0o007 == 0
    # Each notice names the entry and carries the line, so the room is a third copy.
    assert len(room.notices) == 2
    assert f"entry #{second.seq} (35 entries" in room.notices[1]
    assert from_line(room.notices[1].splitlines()[-1]) == second
    assert await _verify(db, tmp_path) == []


async def test_a_failed_post_is_retried_by_the_next_run(db: Database, tmp_path: Path) -> None:
    room = Room()
    sealer = _sealer(db, tmp_path, room)
    await _record(sealer.audit_log, 3)
    room.down = True
    cp = await sealer.checkpoint()  # sealed in the table and the file all the same
    assert cp is not None and room.notices == []
    room.down = False
    assert await sealer.checkpoint() is None
    assert len(room.notices) == 1 and f"#{cp.seq}" in room.notices[0]
    assert await sealer.checkpoint() is None and len(room.notices) == 1


async def test_no_seal_over_a_cut_log(db: Database, tmp_path: Path) -> None:
    """Deleting the sealed tail then appending: the sealer refuses to sign the new head
    (it would vouch for the cut) and tells the admin room, once."""
    room = Room()
    sealer = _sealer(db, tmp_path, room)
    await _record(sealer.audit_log, 10)
    cp = await sealer.checkpoint()
    assert cp is not None
    await db.execute("DELETE FROM audit_log WHERE seq >= $1", cp.seq - 2)
    fresh = _sealer(db, tmp_path, room)  # after a restart: the head is re-read
    await _record(fresh.audit_log, 2, start=10)
    for _ in range(2):
        with pytest.raises(AuditSealError, match=f"entry {cp.seq}"):
            await fresh.checkpoint()
    assert sum("is gone or changed" in n for n in room.notices) == 1
    assert len(await read_checkpoints(db)) == 1
    # The chain was continued over the cut, so only the checkpoint shows it.
    assert await _verify(db, tmp_path) == [("checkpoint_entry_missing", cp.seq)]


async def test_pruning_keeps_the_log_verifiable(db: Database, tmp_path: Path) -> None:
    clock = Clock(1_750_000_000.0 - 400 * 86400)  # entries written 400 days ago, sealed
    log = AuditLog(db, clock=clock)
    sealer = AuditSealer(db, log, KEY, tmp_path / "checkpoints.jsonl", clock=clock)
    await _record(log, 8)
    assert await sealer.checkpoint() is not None
    clock.t = 1_750_000_000.0  # now: recent entries, then pruning at one year
    now_ms = int(clock.t * 1000)
    await _record(log, 4, start=8)
    result = await sealer.prune(365)
    assert result is not None and result.pruned == 8 and result.anchor.count == 8
    rows = await db.fetch("SELECT action, details FROM audit_log ORDER BY seq")
    assert len(rows) == 5 and rows[-1]["action"] == PRUNED_ACTION
    assert json.loads(rows[-1]["details"])["through_seq"] == result.anchor.seq
    assert await sealer.prune(365) is None  # nothing older left
    assert len(await read_checkpoints(db)) == 2  # pruning is sealed at once
    assert await _verify(db, tmp_path, now_ms) == []
    # The chain goes on from the anchor, in this process and after a restart.
    await AuditLog(db).record("admin", "identity.bound", subject="@x:x")
    assert (await AuditLog(db).verify()).ok
    assert await _verify(db, tmp_path, now_ms) == []
    # Tampering after pruning is still found; so is moving the anchor over more entries.
    first = await db.fetchval("SELECT MIN(seq) FROM audit_log")
    await db.execute("UPDATE audit_log SET subject = '@y:x' WHERE seq = $1", first + 1)
    assert await _verify(db, tmp_path, now_ms) == [("edited", first + 1)]
    await db.execute("DELETE FROM audit_log WHERE seq <= $1", first + 1)
    await db.execute("UPDATE audit_anchor SET seq = $1, count = count + 2", first + 1)
    assert ("anchor_unexplained", first + 1) in await _verify(db, tmp_path, now_ms)


async def test_pruning_everything_old_keeps_the_chain_going(db: Database, tmp_path: Path) -> None:
    """Every entry is past the retention: the pruning entry alone remains, chained on."""
    clock = Clock(1_700_000_000.0)
    log = AuditLog(db, clock=clock)
    sealer = AuditSealer(db, log, KEY, tmp_path / "checkpoints.jsonl", clock=clock)
    await _record(log, 5)
    clock.t += 200 * 86400
    result = await sealer.prune(183)
    assert result is not None and result.pruned == 5
    assert await db.fetchval("SELECT COUNT(*) FROM audit_log") == 1
    await db.execute("DELETE FROM audit_log")  # even an emptied table resumes at the anchor
    fresh = AuditLog(db, clock=clock)
    await fresh.record("admin", "x")
    row = await db.fetchrow("SELECT prev_hash FROM audit_log")
    assert row is not None and row["prev_hash"] == result.anchor.hash


async def test_checkpoint_file_lines(tmp_path: Path) -> None:
    sealer_file = tmp_path / "c.jsonl"
    from bridge.audit.seal import sign, to_line

    a, b = sign(KEY, 1, "a" * 64, 1, 1, 2), sign(KEY, 2, "b" * 64, 3, 2, 4)
    sealer_file.write_text(f"{to_line(a)}\nnot json\n\n{to_line(b)}\n{to_line(b)[:30]}")
    read = read_checkpoint_file(sealer_file)
    assert [(s.checkpoint, s.source) for s in read.checkpoints] == [(a, "file:1"), (b, "file:4")]
    assert read.unreadable == [2] and read.partial_last_line == 5
