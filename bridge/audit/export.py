"""Exporting the audit log over a time window, as JSON lines or CSV.

The log holds decisions, never message content, and the export holds exactly the log's
columns (plus the time in ISO 8601): ``seq, ts, time, actor, action, room_id, subject,
details, prev_hash, hash``. ``details`` is the stored JSON text, byte for byte, so an
exported range can be re-hashed independently (see docs/audit.md).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from mautrix.util.async_db import Database

from bridge.audit.store import pages

FIELDS = (
    "seq",
    "ts",
    "time",
    "actor",
    "action",
    "room_id",
    "subject",
    "details",
    "prev_hash",
    "hash",
)
_FORMULA_START = ("=", "+", "-", "\t", "\r")


def iso_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def export_record(row: Sequence[Any]) -> dict[str, Any]:
    """One row (``SELECT_COLUMNS`` order) as the export's fields."""
    seq, ts, actor, action, room_id, subject, details, prev_hash, digest = row
    return {
        "seq": int(seq),
        "ts": int(ts),
        "time": iso_time(int(ts)),
        "actor": actor,
        "action": action,
        "room_id": room_id,
        "subject": subject,
        "details": details,
        "prev_hash": prev_hash,
        "hash": digest,
    }


def csv_cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run as a formula (Matrix IDs, which start with
    ``@``, ``!`` or ``$``, are left as they are)."""
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


async def export_log(
    db: Database, out: TextIO, fmt: str, *, since_ms: int, until_ms: int | None
) -> int:
    """Write the entries with ``since_ms <= ts < until_ms`` to ``out``; return how many."""
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(FIELDS)
    count = 0
    async for rows in pages(db, since_ts=since_ms, until_ts=until_ms):
        for row in rows:
            record = export_record(row)
            if writer is not None:
                writer.writerow([csv_cell(record[f]) for f in FIELDS])
            else:
                out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
    return count
