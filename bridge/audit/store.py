"""Reading the audit log's seal from the database and the checkpoint file, and checking
the whole log with :mod:`bridge.audit.verify`.

Rows are read in pages by ``seq`` (keyset), so neither ``verify`` nor ``export`` holds
the whole log in memory.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from mautrix.util.async_db import Database

from bridge.audit.seal import Checkpoint, from_line, to_line
from bridge.audit.verify import SELECT_COLUMNS, Anchor, LogVerifier, Sourced, VerifyReport

PAGE = 20_000
_CHECKPOINT_COLUMNS = "seq, head_hash, head_ts, count, ts, key_id, public_key, signature"


async def read_anchor(db: Database) -> Anchor | None:
    row = await db.fetchrow("SELECT seq, hash, count, ts FROM audit_anchor WHERE id = 1")
    if row is None:
        return None
    return Anchor(seq=int(row["seq"]), hash=row["hash"], count=int(row["count"]), ts=int(row["ts"]))


def _checkpoint(row: Any) -> Checkpoint:
    return Checkpoint(
        seq=int(row["seq"]),
        head_hash=row["head_hash"],
        head_ts=int(row["head_ts"]),
        count=int(row["count"]),
        ts=int(row["ts"]),
        key_id=row["key_id"],
        public_key=row["public_key"],
        signature=row["signature"],
    )


async def read_checkpoints(db: Database) -> list[Checkpoint]:
    rows = await db.fetch(f"SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoint ORDER BY seq")
    return [_checkpoint(r) for r in rows]


async def last_checkpoint(db: Database) -> Checkpoint | None:
    row = await db.fetchrow(
        f"SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoint ORDER BY seq DESC LIMIT 1"
    )
    return None if row is None else _checkpoint(row)


async def insert_checkpoint(db: Database, cp: Checkpoint) -> None:
    await db.execute(
        f"INSERT INTO audit_checkpoint ({_CHECKPOINT_COLUMNS}) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        cp.seq,
        cp.head_hash,
        cp.head_ts,
        cp.count,
        cp.ts,
        cp.key_id,
        cp.public_key,
        cp.signature,
    )


async def unposted_checkpoints(db: Database, limit: int = 10) -> list[Checkpoint]:
    rows = await db.fetch(
        f"SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoint WHERE posted_at IS NULL "
        "ORDER BY seq LIMIT $1",
        limit,
    )
    return [_checkpoint(r) for r in rows]


async def mark_posted(db: Database, seq: int, now_ms: int) -> None:
    await db.execute("UPDATE audit_checkpoint SET posted_at = $1 WHERE seq = $2", now_ms, seq)


async def pages(
    db: Database,
    *,
    since_ts: int | None = None,
    until_ts: int | None = None,
    page: int = PAGE,
) -> AsyncIterator[list[Any]]:
    """Every row (``SELECT_COLUMNS``) in ``seq`` order, a page at a time; with a time
    window, only the rows whose ``ts`` is in ``[since_ts, until_ts)``."""
    low = -1
    where = ""
    args: list[Any] = []
    if since_ts is not None:
        args.append(since_ts)
        where += f" AND ts >= ${len(args) + 1}"
    if until_ts is not None:
        args.append(until_ts)
        where += f" AND ts < ${len(args) + 1}"
    limit = f"${len(args) + 2}"
    query = (
        f"SELECT {SELECT_COLUMNS} FROM audit_log WHERE seq > $1{where} ORDER BY seq LIMIT {limit}"
    )
    # The next page is read while the caller works on this one (SQLite reads in its own
    # thread, so reading and hashing overlap).
    ahead: asyncio.Task[list[Any]] | None = asyncio.ensure_future(db.fetch(query, low, *args, page))
    try:
        while ahead is not None:
            rows = await ahead
            ahead = None
            if not rows:
                return
            if len(rows) == page:
                low = int(rows[-1][0])
                ahead = asyncio.ensure_future(db.fetch(query, low, *args, page))
            yield rows
    finally:
        if ahead is not None:
            ahead.cancel()


# -- the checkpoint file ---------------------------------------------------------------


@dataclass
class CheckpointFile:
    checkpoints: list[Sourced] = field(default_factory=list)
    unreadable: list[int] = field(default_factory=list)  # line numbers
    partial_last_line: int | None = None  # an interrupted write at the very end


def read_checkpoint_file(path: Path) -> CheckpointFile:
    """Every checkpoint of the file (``OSError`` if it cannot be read)."""
    out = CheckpointFile()
    data = path.read_bytes()
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            cp = from_line(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            if number == len(lines) and not data.endswith(b"\n"):
                out.partial_last_line = number
            else:
                out.unreadable.append(number)
            continue
        out.checkpoints.append(Sourced(cp, f"file:{number}"))
    return out


def append_checkpoint_file(path: Path, cp: Checkpoint) -> None:
    """Append one line and fsync it (and, when the file is new, its directory)."""
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, (to_line(cp) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# -- verification ----------------------------------------------------------------------


async def verify_database(
    db: Database,
    trusted: Mapping[str, Ed25519PublicKey],
    checkpoint_file: Path | None,
    *,
    now_ms: int,
) -> VerifyReport:
    """Check the stored log against the database's and the file's checkpoints.

    ``checkpoint_file`` None: the database's checkpoints only (nothing is reported
    missing from a file). A file that cannot be read raises ``OSError``."""
    sourced = [Sourced(cp, "db") for cp in await read_checkpoints(db)]
    from_file = read_checkpoint_file(checkpoint_file) if checkpoint_file is not None else None
    if from_file is not None:
        sourced.extend(from_file.checkpoints)
    verifier = LogVerifier(
        sourced,
        trusted,
        await read_anchor(db),
        now_ms=now_ms,
        file_read=from_file is not None,
    )
    if from_file is not None:
        for number in from_file.unreadable:
            verifier.add("unreadable_line", None, source=f"file:{number}")
        if from_file.partial_last_line is not None:
            verifier.warn("partial_line", None, source=f"file:{from_file.partial_last_line}")
    async for rows in pages(db):
        verifier.feed(rows)
    return verifier.finish()
