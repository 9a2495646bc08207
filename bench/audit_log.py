"""Audit log: appends/s through ``AuditLog`` and ``santeguard audit verify`` over 1 M entries.

Appends: ``--concurrency`` recorders (the gate records one decision per request, many in
flight) each append their share of ``--appends`` entries through the real ``AuditLog``
(hash chain, group commit; on SQLite the intake's dedicated writer, as the app wires it).
Baseline, same run, same database: the same rows inserted by plain ``executemany`` in
batches of ``--concurrency``, without hashing or waiting callers.

Verify: a valid chain of ``--entries`` entries with a checkpoint every 10,000 is written
straight into the database (bulk insert), then checked by what the command runs
(``verify_database``: paged reads + chain + checkpoints), and by the pure verifier alone
over rows already in memory.

    python -m bench.audit_log --db sqlite --db postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mautrix.util.async_db import Database

from bridge.audit.chain import GENESIS, entry_hash
from bridge.audit.log import AuditLog
from bridge.audit.seal import sign, to_line, trusted_keys
from bridge.audit.store import verify_database
from bridge.audit.verify import verify_log
from bridge.db.database import open_database
from bridge.db.sqlite_writer import SQLiteWriter
from bridge.db.txn import write_transaction

PG_ADMIN = os.environ.get("SANTEGUARD_TEST_PG", "postgres://postgres@127.0.0.1:5432/test")
INSERT = (
    "INSERT INTO audit_log (ts, actor, action, room_id, subject, details, prev_hash, hash) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)
KEY = Ed25519PrivateKey.from_private_bytes(b"b" * 32)


async def _pg_database() -> str:
    import asyncpg

    name = f"sg_bench_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


async def _drop_pg(uri: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute(f'DROP DATABASE IF EXISTS "{uri.rsplit("/", 1)[1]}" WITH (FORCE)')
    await conn.close()


def _decision(i: int) -> tuple[str, str, str, dict[str, Any]]:
    return (
        "gate",
        "gate.refused.user_may_join_room" if i % 4 else "gate.allowed.user_may_join_room",
        f"!room{i % 50}:bench.test",
        {"reason": "not_verified", "user": f"@user{i}:bench.test", "n": i},
    )


async def _open(kind: str) -> tuple[Database, SQLiteWriter | None, str]:
    if kind == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="sg-bench-audit-")) / "bench.db"
        uri = f"sqlite:///{path}"
        db = open_database(uri, sqlite_synchronous="normal")
        await db.start()
        return db, SQLiteWriter(str(path), "NORMAL"), uri
    uri = await _pg_database()
    db = open_database(uri)
    await db.start()
    return db, None, uri


async def _close(db: Database, writer: SQLiteWriter | None, uri: str) -> None:
    if writer is not None:
        await writer.close()
    await db.stop()
    if not uri.startswith("sqlite"):
        await _drop_pg(uri)


async def _appends(log: AuditLog, total: int, concurrency: int) -> float:
    per = total // concurrency
    decisions = [_decision(i) for i in range(per * concurrency)]  # the callers' part

    async def recorder(k: int) -> None:
        for actor, action, room, details in decisions[k * per : (k + 1) * per]:
            await log.record(actor, action, room_id=room, subject=details["user"], details=details)

    start = time.perf_counter()
    await asyncio.gather(*(recorder(k) for k in range(concurrency)))
    return per * concurrency / (time.perf_counter() - start)


async def _baseline(db: Database, writer: SQLiteWriter | None, total: int, batch: int) -> float:
    rows = []
    for i in range(total):
        actor, action, room, details = _decision(i)
        d = json.dumps(details, sort_keys=True)
        rows.append(
            (1_700_000_000_000 + i, actor, action, room, details["user"], d, "0" * 64, "1" * 64)
        )
    start = time.perf_counter()
    for k in range(0, total, batch):
        chunk = rows[k : k + batch]
        if writer is not None:
            await writer.executemany(INSERT, chunk)
        else:
            async with write_transaction(db) as conn:
                await conn.executemany(INSERT, chunk)
    return total / (time.perf_counter() - start)


async def bench_appends(kind: str, total: int, concurrency: int, repeat: int) -> None:
    rates: list[float] = []
    bases: list[float] = []
    for _ in range(repeat):
        db, writer, uri = await _open(kind)
        try:
            log = AuditLog(db)
            log.use_writer(writer)
            await _appends(log, 2000, concurrency)  # warm-up
            rates.append(await _appends(log, total, concurrency))
            assert (await log.verify()).ok
            bases.append(await _baseline(db, writer, total, concurrency))
        finally:
            await _close(db, writer, uri)
    ratios = [r / b for r, b in zip(rates, bases, strict=True)]
    print(
        f"{'appends ' + kind:<22} {statistics.median(rates):>12,.0f} "
        f"{statistics.median(bases):>14,.0f} {statistics.median(ratios):>7.2f}"
    )


def _chain(n: int) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """A valid chain (SELECT_COLUMNS order) and a checkpoint every 10,000 entries."""
    rows: list[tuple[Any, ...]] = []
    cps = []
    prev = GENESIS
    for seq in range(1, n + 1):
        actor, action, room, details = _decision(seq)
        d = json.dumps(details, sort_keys=True)
        ts = 1_700_000_000_000 + seq
        h = entry_hash(prev, ts, actor, action, room, details["user"], d)
        rows.append((seq, ts, actor, action, room, details["user"], d, prev, h))
        if seq % 10_000 == 0 or seq == n:
            cps.append(sign(KEY, seq, h, ts, seq, ts + 1))
        prev = h
    return rows, cps


async def _load(kind: str, rows: list[tuple[Any, ...]], cps: list[Any]) -> tuple[Database, str]:
    db, writer, uri = await _open(kind)
    if writer is not None:
        await writer.close()
    cols = "seq, ts, actor, action, room_id, subject, details, prev_hash, hash"
    if kind == "sqlite":
        path = uri.removeprefix("sqlite://")
        conn = sqlite3.connect(path)
        with conn:
            conn.executemany(f"INSERT INTO audit_log ({cols}) VALUES (?,?,?,?,?,?,?,?,?)", rows)
        conn.close()
    else:
        async with db.acquire() as conn:
            await conn.copy_records_to_table("audit_log", records=rows, columns=cols.split(", "))
    for cp in cps:
        await db.execute(
            "INSERT INTO audit_checkpoint (seq, head_hash, head_ts, count, ts, key_id, "
            "public_key, signature) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            cp.seq, cp.head_hash, cp.head_ts, cp.count, cp.ts, cp.key_id, cp.public_key,
            cp.signature,
        )  # fmt: skip
    return db, uri


async def bench_verify(kinds: list[str], entries: int, repeat: int) -> None:
    t0 = time.perf_counter()
    rows, cps = _chain(entries)
    print(f"(generated {entries:,} chained entries in {time.perf_counter() - t0:.1f} s)")
    trusted = trusted_keys([KEY.public_key()])
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        report = verify_log(rows, [], None, trusted=trusted, now_ms=0)
        times.append(time.perf_counter() - start)
        assert report.ok and report.entries == entries
    median = statistics.median(times)
    print(f"{'verify, in memory':<22} {median:>10.2f} s {entries / median:>14,.0f}")
    checkpoint_file = Path(tempfile.mkdtemp(prefix="sg-bench-audit-")) / "checkpoints.jsonl"
    checkpoint_file.write_text("".join(to_line(c) + "\n" for c in cps))
    for kind in kinds:
        db, uri = await _load(kind, rows, cps)
        try:
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                report = await verify_database(db, trusted, checkpoint_file, now_ms=0)
                times.append(time.perf_counter() - start)
                assert report.ok and report.entries == entries, report.findings[:3]
                assert report.checkpoints == len(cps)
        finally:
            await db.stop()
            if kind != "sqlite":
                await _drop_pg(uri)
        median = statistics.median(times)
        print(f"{'verify, ' + kind:<22} {median:>10.2f} s {entries / median:>14,.0f}")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--db", action="append", choices=["sqlite", "postgres"])
    ap.add_argument("--appends", type=int, default=100_000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    kinds = args.db or ["sqlite", "postgres"]
    print(
        f"{args.appends:,} appends by {args.concurrency} concurrent recorders, median of "
        f"{args.repeat}; baseline: the same rows by plain executemany, batches of "
        f"{args.concurrency}, no hashing"
    )
    print(f"{'':<22} {'AuditLog /s':>12} {'baseline /s':>14} {'ratio':>7}")
    for kind in kinds:
        asyncio.run(bench_appends(kind, args.appends, args.concurrency, args.repeat))
    print(f"\nverify {args.entries:,} entries (checkpoint every 10,000), median of {args.repeat}")
    print(f"{'':<22} {'time':>12} {'entries/s':>14}")
    asyncio.run(bench_verify(kinds, args.entries, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
