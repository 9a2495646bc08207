"""Writing an extract import into the database, and making it current atomically.

The import streams the file in batches (bounded memory) and writes them under a fresh
``directory_import`` id (COPY on PostgreSQL); a single transaction then makes that
import current and drops the previous one, so readers see either the old directory or
the new one, never a mix.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import asyncpg
from mautrix.util.async_db import Connection, Database, Scheme

from bridge.identity.sources.extract.parse import (
    _ACTIVITY_COLUMNS,
    _PRACTITIONER_COLUMNS,
    ExtractFormatError,
    RejectionStats,
    _Batch,
    _ExtractReader,
)

log = logging.getLogger("santeguard.directory.extract")


def _placeholders(n: int) -> str:
    return ", ".join(f"${i}" for i in range(1, n + 1))


_INSERT_PRACTITIONER = (
    f"INSERT INTO directory_practitioner ({', '.join(_PRACTITIONER_COLUMNS)}) "
    f"VALUES ({_placeholders(len(_PRACTITIONER_COLUMNS))}) ON CONFLICT DO NOTHING"
)
_INSERT_ACTIVITY = (
    f"INSERT INTO directory_activity ({', '.join(_ACTIVITY_COLUMNS)}) "
    f"VALUES ({_placeholders(len(_ACTIVITY_COLUMNS))})"
)


class ImportSuperseded(RuntimeError):
    """Another import started after this one; this one must not become current."""


@dataclass(frozen=True, slots=True)
class ImportReport:
    import_id: int
    source_name: str
    rows_read: int
    rows_kept: int
    rows_rejected: int
    practitioners: int
    activities: int
    rejections: Mapping[str, RejectionStats]
    duration_s: float


def _acquire(db: Database) -> AbstractAsyncContextManager[Connection]:
    # mautrix annotates acquire() in a way mypy cannot use as a context manager.
    return cast("AbstractAsyncContextManager[Connection]", db.acquire())


def _transaction(conn: Connection) -> AbstractAsyncContextManager[None]:
    return cast("AbstractAsyncContextManager[None]", conn.transaction())


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _write_batch(db: Database, batch: _Batch) -> None:
    """One transaction per batch: other writers (the appservice) get turns in between."""
    async with _acquire(db) as conn, _transaction(conn):
        if db.scheme == Scheme.SQLITE:
            if batch.practitioners:
                await conn.executemany(_INSERT_PRACTITIONER, batch.practitioners)
            if batch.activities:
                await conn.executemany(_INSERT_ACTIVITY, batch.activities)
            return
        # Losing an uncommitted batch of a not-yet-current import on a crash is harmless
        # (the import is redone), so don't wait for the WAL flush of each batch.
        await conn.execute("SET LOCAL synchronous_commit = off")
        if batch.practitioners:
            await _copy_practitioners(conn, batch.practitioners)
        if batch.activities:
            await conn.copy_records_to_table(
                "directory_activity", records=batch.activities, columns=_ACTIVITY_COLUMNS
            )


async def _copy_practitioners(conn: Connection, records: list[tuple[Any, ...]]) -> None:
    """COPY straight into the table; if a person reappears non-adjacently, stage instead.

    COPY cannot skip duplicates. Rows of one person are normally adjacent (and already
    merged by the reader), so the slower staged ``INSERT … ON CONFLICT`` only runs for
    the rare batch that needs it, rolled back to a savepoint first.
    """
    try:
        async with _transaction(conn):
            await conn.copy_records_to_table(
                "directory_practitioner", records=records, columns=_PRACTITIONER_COLUMNS
            )
        return
    except asyncpg.UniqueViolationError:
        pass
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS directory_practitioner_stage "
        "(LIKE directory_practitioner) ON COMMIT DELETE ROWS"
    )
    await conn.copy_records_to_table(
        "directory_practitioner_stage", records=records, columns=_PRACTITIONER_COLUMNS
    )
    cols = ", ".join(_PRACTITIONER_COLUMNS)
    await conn.execute(
        f"INSERT INTO directory_practitioner ({cols}) "
        f"SELECT {cols} FROM directory_practitioner_stage ON CONFLICT DO NOTHING"
    )


async def _start_import(db: Database, source_name: str) -> int:
    """Register a new running import; any import still "running" is abandoned.

    A crashed import would otherwise stay "running" forever. An abandoned import that
    is in fact still running fails at its switch (see ImportSuperseded).
    """
    async with _acquire(db) as conn, _transaction(conn):
        await conn.execute(
            "UPDATE directory_import SET status = 'abandoned', finished_at = $1 "
            "WHERE status = 'running'",
            _now_ms(),
        )
        import_id = await conn.fetchval(
            "INSERT INTO directory_import (started_at, source_name) VALUES ($1, $2) RETURNING id",
            _now_ms(),
            source_name,
        )
    return int(import_id)


_TABLES = ("directory_activity", "directory_name", "directory_practitioner")


async def _index_names(db: Database, import_id: int) -> None:
    """Fill ``directory_name`` for this import, in key order so every insert appends."""
    async with _acquire(db) as conn, _transaction(conn):
        if db.scheme != Scheme.SQLITE:
            # Sort the ~1.5 M names in memory rather than in temporary files.
            await conn.execute("SET LOCAL work_mem = '128MB'")
        await conn.execute(
            "INSERT INTO directory_name (import_id, name_norm, idnps) "
            "SELECT import_id, name_norm, idnps FROM directory_practitioner "
            "WHERE import_id = $1 ORDER BY name_norm, idnps",
            import_id,
        )


async def _switch(db: Database, import_id: int, reader: _ExtractReader, practitioners: int) -> None:
    """Make ``import_id`` current and delete every other import's rows, atomically."""
    rejected = reader.rows_read - reader.rows_kept
    async with _acquire(db) as conn, _transaction(conn):
        ok = await conn.fetchval(
            "UPDATE directory_import SET status = 'done', finished_at = $2, rows_read = $3, "
            "rows_kept = $4, rows_rejected = $5, practitioners = $6 "
            "WHERE id = $1 AND status = 'running' RETURNING id",
            import_id,
            _now_ms(),
            reader.rows_read,
            reader.rows_kept,
            rejected,
            practitioners,
        )
        if ok is None:
            raise ImportSuperseded(f"directory import {import_id} was superseded by a newer one")
        await conn.execute(
            "UPDATE directory_import SET is_current = false, status = 'replaced' "
            "WHERE is_current AND id <> $1",
            import_id,
        )
        await conn.execute("UPDATE directory_import SET is_current = true WHERE id = $1", import_id)
        # Every other import's rows, including leftovers of abandoned or failed ones.
        # "import_id IN (…)" lets both engines delete by primary-key range.
        for table in _TABLES:
            await conn.execute(
                f"DELETE FROM {table} WHERE import_id IN "
                "(SELECT id FROM directory_import WHERE id <> $1)",
                import_id,
            )


async def _fail(db: Database, import_id: int, error: BaseException) -> None:
    """Best effort: mark the import failed and drop its rows (never the current ones)."""
    try:
        async with _acquire(db) as conn, _transaction(conn):
            await conn.execute(
                "UPDATE directory_import SET status = 'failed', finished_at = $2, error = $3 "
                "WHERE id = $1 AND NOT is_current",
                import_id,
                _now_ms(),
                f"{type(error).__name__}: {error}"[:500],
            )
            current = await conn.fetchval("SELECT id FROM directory_import WHERE is_current")
            if current != import_id:
                for table in _TABLES:
                    await conn.execute(f"DELETE FROM {table} WHERE import_id = $1", import_id)
    except Exception:
        log.exception("Could not clean up failed directory import %d", import_id)


async def import_extract(
    db: Database,
    path: Path,
    *,
    batch_size: int = 5000,
    max_examples: int = 10,
    check_adeli_key: bool = True,
    max_reject_ratio: float = 0.5,
) -> ImportReport:
    """Import an extract file and make it the current directory.

    Malformed lines are rejected (see the report) while the rest imports. The switch is
    refused, leaving the previous directory in place, if no line is valid or more than
    ``max_reject_ratio`` of them are rejected: a truncated or wrong file must not wipe
    the directory. ``check_adeli_key=False`` accepts ADELI numbers failing the (inferred)
    Luhn key, should that rule prove wrong on real data.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    started = time.monotonic()
    reader = await asyncio.to_thread(
        _ExtractReader,
        path,
        batch_size=batch_size,
        max_examples=max_examples,
        check_adeli_key=check_adeli_key,
    )
    try:
        import_id = await _start_import(db, path.name)
        reader.import_id = import_id
        try:
            # Parse the next batch in a thread while the current one is written.
            pending = asyncio.ensure_future(asyncio.to_thread(reader.read_batch))
            try:
                while True:
                    batch = await pending
                    if not batch.lines:
                        break
                    pending = asyncio.ensure_future(asyncio.to_thread(reader.read_batch))
                    await _write_batch(db, batch)
            finally:
                if not pending.done():
                    pending.cancel()
                    await asyncio.gather(pending, return_exceptions=True)
            if reader.rows_kept == 0:
                raise ExtractFormatError(f"{path.name}: no valid line, directory left unchanged")
            rejected = reader.rows_read - reader.rows_kept
            if rejected > max_reject_ratio * reader.rows_read:
                raise ExtractFormatError(
                    f"{path.name}: {rejected} of {reader.rows_read} lines rejected, "
                    "directory left unchanged"
                )
            practitioners = int(
                await db.fetchval(
                    "SELECT COUNT(*) FROM directory_practitioner WHERE import_id = $1", import_id
                )
            )
            await _index_names(db, import_id)
            await _switch(db, import_id, reader, practitioners)
        except BaseException as e:
            await _fail(db, import_id, e)
            raise
    finally:
        await asyncio.to_thread(reader.close)
    report = ImportReport(
        import_id=import_id,
        source_name=path.name,
        rows_read=reader.rows_read,
        rows_kept=reader.rows_kept,
        rows_rejected=reader.rows_read - reader.rows_kept,
        practitioners=practitioners,
        activities=reader.activities,
        rejections=MappingProxyType(dict(reader.rejections)),
        duration_s=time.monotonic() - started,
    )
    log.info(
        "Directory import %d from %s: %d lines, %d kept, %d rejected, %d practitioners in %.1f s",
        import_id,
        report.source_name,
        report.rows_read,
        report.rows_kept,
        report.rows_rejected,
        report.practitioners,
        report.duration_s,
    )
    return report
