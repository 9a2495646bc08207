"""Import of the Annuaire Santé ``PS_LibreAcces_Personne_activite`` extract, and lookups.

The file is ~2 million pipe-separated lines (one per practitioner per activity site),
published daily. The import streams it in batches (bounded memory), validates every
line, keeps the rejects' reasons for the report, and writes under a fresh
``directory_import`` id; a single transaction then makes that import current and drops
the previous one, so readers see either the old directory or the new one, never a mix.

Columns are found by header name, not position: the layout has grown from 48 to 56
columns over the years and at least one variant spells some names differently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Final, cast

import asyncpg
from mautrix.util.async_db import Connection, Database, Scheme

from bridge.identity.identifiers import IdentifierError, IdKind, check_number, parse_identifier
from bridge.identity.model import (
    DirectoryUnavailable,
    Practitioner,
    fold,
    profession_codes,
    profession_label,
)

log = logging.getLogger("santeguard.directory.extract")

# Rejection reasons, as they appear in ImportReport.rejections.
WRONG_COLUMN_COUNT: Final = "wrong_column_count"
BAD_ENCODING: Final = "bad_encoding"
UNKNOWN_IDENTIFIER_TYPE: Final = "unknown_identifier_type"
INVALID_IDENTIFIER: Final = "invalid_identifier"
IDNPS_MISMATCH: Final = "idnps_mismatch"
MISSING_NAME: Final = "missing_name"

_KINDS: Mapping[str, IdKind] = MappingProxyType({"8": "rpps", "0": "adeli"})
_MAX_SEARCH_LIMIT = 200

# Field → accepted header spellings (compared after fold()). The first spelling is the
# current official header; the others are variants seen in older or odd extracts.
_COLUMNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "id_type": ("Type d'identifiant PP",),
        "identifier": ("Identifiant PP",),
        "idnps": ("Identification nationale PP",),
        "practice_civility_code": ("Code civilité d'exercice",),
        "practice_civility": ("Libellé civilité d'exercice", "Libellé civilité exercice"),
        "civility_code": ("Code civilité",),
        "civility": ("Libellé civilité",),
        "last_name": ("Nom d'exercice",),
        "first_name": ("Prénom d'exercice",),
        "profession_code": ("Code profession",),
        "profession_label": ("Libellé profession",),
        "category_code": ("Code catégorie professionnelle",),
        "skill_type": ("Code type savoir-faire",),
        "skill_code": ("Code savoir-faire",),
        "skill_label": ("Libellé savoir-faire",),
        "mode_code": ("Code mode exercice",),
        "structure_id": ("Identifiant technique de la structure",),
        "company_name": ("Raison sociale site",),
        "trade_name": ("Enseigne commerciale site",),
        "postal_code": ("Code postal (coord. structure)",),
        "city_code": ("Code commune (coord. structure)",),
        "city": ("Libellé commune (coord. structure)",),
        "email": ("Adresse e-mail (coord. structure)",),
        "department_code": (
            "Code Département (structure)",
            "Code département (coord. structure)",
        ),
        "sector_code": ("Code secteur d'activité",),
    }
)
_REQUIRED = ("id_type", "identifier", "idnps", "last_name", "first_name")

_PRACTITIONER_COLUMNS = (
    "import_id",
    "idnps",
    "id_kind",
    "identifier",
    "last_name",
    "first_name",
    "civility_code",
    "civility",
    "practice_civility_code",
    "practice_civility",
    "profession_code",
    "profession_label",
    "category_code",
    "skill_type",
    "skill_code",
    "skill_label",
    "name_norm",
)
_ACTIVITY_COLUMNS = (
    "import_id",
    "idnps",
    "line_no",
    "mode_code",
    "structure_id",
    "structure_name",
    "postal_code",
    "city_code",
    "city",
    "city_norm",
    "department_code",
    "email",
    "sector_code",
)


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


class ExtractFormatError(ValueError):
    """The file as a whole is unusable (no header, required column missing, no valid row)."""


class ImportSuperseded(RuntimeError):
    """Another import started after this one; this one must not become current."""


@dataclass(slots=True)
class RejectionStats:
    """How many lines were refused for one reason, with the first few line numbers."""

    count: int = 0
    examples: list[tuple[int, str]] = field(default_factory=list)


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


# ---------------------------------------------------------------------------
# Reading (synchronous; runs in a worker thread so the event loop stays free)


def _header_key(name: str) -> str:
    return fold(name)


@dataclass(slots=True)
class _Batch:
    practitioners: list[tuple[Any, ...]]
    activities: list[tuple[Any, ...]]
    lines: int


class _ExtractReader:
    """Parses the extract line by line into batches of DB tuples, counting rejects."""

    def __init__(
        self,
        path: Path,
        *,
        batch_size: int,
        max_examples: int,
        check_adeli_key: bool,
    ) -> None:
        self.batch_size = batch_size
        self.max_examples = max_examples
        self.check_adeli_key = check_adeli_key
        self.import_id = 0
        self.rows_read = 0
        self.rows_kept = 0
        self.activities = 0
        self.rejections: dict[str, RejectionStats] = {}
        self._line_no = 1
        self._last_idnps = ""
        # Per-import memos of folded first names and city names: few distinct values,
        # millions of rows. Cleared when large, so memory stays bounded.
        self._first_norm: dict[str, str] = {}
        self._city_norm: dict[str, str] = {}
        # errors="replace" lets one bad byte reject one line instead of the whole import.
        self._file: IO[str] = path.open(encoding="utf-8", errors="replace", newline="")
        try:
            self._read_header()
        except BaseException:
            self._file.close()
            raise

    def _read_header(self) -> None:
        header = self._file.readline()
        if not header:
            raise ExtractFormatError("the file is empty (no header line)")
        names = header.lstrip("\ufeff").rstrip("\r\n").split("|")
        if names and names[-1] == "":
            names.pop()  # trailing separator
        self.n_columns = len(names)
        position: dict[str, int] = {}
        for i, name in enumerate(names):
            position.setdefault(_header_key(name), i)
        self.idx: dict[str, int] = {}
        for attr, spellings in _COLUMNS.items():
            for spelling in spellings:
                if (pos := position.get(_header_key(spelling))) is not None:
                    self.idx[attr] = pos
                    break
        missing = [_COLUMNS[a][0] for a in _REQUIRED if a not in self.idx]
        if missing:
            raise ExtractFormatError(
                "not a PS_LibreAcces_Personne_activite file: missing column(s) "
                + ", ".join(repr(m) for m in missing)
            )
        self._compile()

    def close(self) -> None:
        self._file.close()

    def _name_norm(self, last_name: str, first_name: str) -> str:
        """``fold(f"{last} {first}")``, memoising the first-name half."""
        first = self._first_norm.get(first_name)
        if first is None:
            if len(self._first_norm) > 50_000:
                self._first_norm.clear()
            first = self._first_norm[first_name] = fold(first_name)
        return f"{fold(last_name)} {first}".strip()

    def _reject(self, reason: str, detail: str) -> None:
        stats = self.rejections.get(reason)
        if stats is None:
            stats = self.rejections[reason] = RejectionStats()
        stats.count += 1
        if len(stats.examples) < self.max_examples:
            stats.examples.append((self._line_no, detail))

    def read_batch(self) -> _Batch:
        """The next ``batch_size`` lines, parsed; an empty batch means end of file."""
        practitioners: list[tuple[Any, ...]] = []
        activities: list[tuple[Any, ...]] = []
        lines = 0
        readline = self._file.readline
        while lines < self.batch_size:
            line = readline()
            if not line:
                break
            self._line_no += 1
            line = line.rstrip("\r\n")
            if not line:
                continue  # blank line, e.g. at end of file
            lines += 1
            self.rows_read += 1
            self._parse(line, practitioners, activities)
        self.activities += len(activities)
        return _Batch(practitioners, activities, lines)

    def _compile(self) -> None:
        """Precompute field pickers: the per-line work is then a few C-level calls."""
        idx = self.idx

        def pick(*attrs: str) -> Callable[[list[str]], tuple[str, ...]]:
            # A column absent from this layout reads the '' appended to every line.
            return itemgetter(*(idx.get(a, -1) for a in attrs))

        self._keys = pick("id_type", "identifier", "idnps", "last_name", "first_name")
        self._person = pick(
            "civility_code",
            "civility",
            "practice_civility_code",
            "practice_civility",
            "profession_code",
            "profession_label",
            "category_code",
            "skill_type",
            "skill_code",
            "skill_label",
        )
        self._site = pick(
            "mode_code",
            "structure_id",
            "company_name",
            "trade_name",
            "postal_code",
            "city_code",
            "city",
            "department_code",
            "email",
            "sector_code",
        )

    def _parse(
        self,
        line: str,
        practitioners: list[tuple[Any, ...]],
        activities: list[tuple[Any, ...]],
    ) -> None:
        """Validate one line and append its DB tuples. Hot path: ~2 million calls."""
        if "\ufffd" in line:
            self._reject(BAD_ENCODING, "invalid UTF-8")
            return
        f = line.split("|")
        n = len(f)
        if n != self.n_columns and not (n == self.n_columns + 1 and f[-1] == ""):
            self._reject(WRONG_COLUMN_COUNT, f"{n} fields, expected {self.n_columns}")
            return
        f.append("")
        # Key fields are stripped; the others are stored as published (never padded).
        id_type, identifier, idnps, last_name, first_name = [v.strip() for v in self._keys(f)]
        kind = _KINDS.get(id_type)
        if kind is None:
            self._reject(UNKNOWN_IDENTIFIER_TYPE, f"type {id_type[:8]!r}")
            return
        try:
            check_number(kind, identifier)
        except IdentifierError as e:
            if self.check_adeli_key or kind != "adeli" or e.code != "bad_check_key":
                self._reject(INVALID_IDENTIFIER, f"{kind}: {e.code}")
                return
        if idnps != id_type + identifier:
            self._reject(IDNPS_MISMATCH, f"{idnps[:16]!r} is not {id_type}+{identifier}")
            return
        if not last_name:
            self._reject(MISSING_NAME, "empty last name")
            return
        self.rows_kept += 1
        import_id = self.import_id
        if idnps != self._last_idnps:
            # Rows of one person are normally adjacent; a later repeat is dropped by
            # the database (first row wins).
            self._last_idnps = idnps
            practitioners.append(
                (
                    import_id,
                    idnps,
                    kind,
                    identifier,
                    last_name,
                    first_name,
                    *self._person(f),
                    self._name_norm(last_name, first_name),
                )
            )
        mode, structure_id, company, trade, postal, city_code, city, dep, email, sector = (
            self._site(f)
        )
        if not (structure_id or company or trade or postal or city):
            return  # no activity site declared (e.g. retired, or no structure)
        city_norm = self._city_norm.get(city)
        if city_norm is None:
            if len(self._city_norm) > 50_000:
                self._city_norm.clear()
            city_norm = self._city_norm[city] = fold(city)
        activities.append(
            (
                import_id,
                idnps,
                self._line_no,
                mode,
                structure_id,
                company or trade,
                postal,
                city_code,
                city,
                city_norm,
                dep,
                email,
                sector,
            )
        )


# ---------------------------------------------------------------------------
# Writing


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


# ---------------------------------------------------------------------------
# Reading the imported directory

_SELECT = (
    "p.idnps, p.id_kind, p.identifier, p.last_name, p.first_name, p.civility, "
    "p.practice_civility, p.profession_code, p.profession_label, p.skill_type, "
    "p.skill_code, p.skill_label"
)
_NO_IMPORT = "no Annuaire Santé extract has been imported yet"
# A scalar subquery, evaluated once: the planners then search by primary-key prefix
# instead of scanning (SQLite, without ANALYZE statistics, otherwise picks a scan).
_CURRENT = "(SELECT id FROM directory_import WHERE is_current)"


def _prefix_range(prefix: str) -> tuple[str, str]:
    """[lo, hi) bounds of strings starting with ``prefix`` (folded ASCII), index-friendly."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _name_prefixes(name: str) -> list[str]:
    """The query as typed, plus its word rotations ("jean dupont" → "dupont jean")."""
    words = fold(name).split()[:4]
    out: list[str] = []
    for i in range(len(words)):
        candidate = " ".join(words[i:] + words[:i])
        if candidate not in out:
            out.append(candidate)
    return out


def _build(row: Mapping[str, Any], cities: list[str], mailboxes: list[str]) -> Practitioner:
    def opt(key: str) -> str | None:
        value = row[key]
        return str(value) if value else None  # '' is stored for "absent"

    specialty = row["skill_type"] == "S"  # ordinal specialty, not another kind of skill
    code = opt("profession_code")
    return Practitioner(
        idnps=row["idnps"],
        id_kind=row["id_kind"],
        identifier=row["identifier"],
        last_name=row["last_name"],
        first_name=row["first_name"],
        civility=opt("practice_civility") or opt("civility"),
        profession_code=code,
        profession_label=opt("profession_label") or profession_label(code),
        specialty_code=opt("skill_code") if specialty else None,
        specialty_label=opt("skill_label") if specialty else None,
        active=True,  # the extract lists registered practitioners only
        cities=tuple(cities),
        mailboxes=tuple(mailboxes),
    )


def _practitioners(rows: Iterable[Mapping[str, Any]]) -> list[Practitioner]:
    """Fold joined practitioner×activity rows (ordered by practitioner) into objects."""
    out: list[Practitioner] = []
    current: Mapping[str, Any] | None = None
    cities: list[str] = []
    mailboxes: list[str] = []
    for row in rows:
        if current is None or row["idnps"] != current["idnps"]:
            if current is not None:
                out.append(_build(current, cities, mailboxes))
            current = row
            cities = []
            mailboxes = []
        city = row["city"]
        if city and city not in cities:
            cities.append(city)
        email = (row["email"] or "").strip().lower()
        # Structure e-mails on MSSanté domains are secure mailboxes; others are not.
        if email.endswith(".mssante.fr") and email not in mailboxes:
            mailboxes.append(email)
    if current is not None:
        out.append(_build(current, cities, mailboxes))
    return out


class ExtractDirectory:
    """:class:`~bridge.identity.model.DirectoryLookup` over the current imported extract."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def _no_current_import(self) -> bool:
        return await self.db.fetchval("SELECT id FROM directory_import WHERE is_current") is None

    async def lookup(self, idnps: str) -> Practitioner | None:
        wanted = parse_identifier(idnps).idnps
        # One statement, so one snapshot: never a practitioner from one import with
        # activities from another.
        rows = await self.db.fetch(
            f"SELECT {_SELECT}, a.city, a.email FROM directory_practitioner p "
            "LEFT JOIN directory_activity a ON a.import_id = p.import_id AND a.idnps = p.idnps "
            f"WHERE p.import_id = {_CURRENT} AND p.idnps = $1 ORDER BY a.line_no",
            wanted,
        )
        if not rows:
            if await self._no_current_import():
                raise DirectoryUnavailable(_NO_IMPORT)
            return None
        return _practitioners(cast("Sequence[Mapping[str, Any]]", rows))[0]

    async def search(
        self, name: str, profession: str | None, city: str | None, limit: int
    ) -> list[Practitioner]:
        """Prefix search on "last first" (or "first last"); an empty name finds nobody.

        ``profession`` is a code or a French label, ``city`` a commune name prefix or a
        postal code prefix. Results are ordered by name, at most 200.
        """
        prefixes = _name_prefixes(name)
        limit = max(0, min(limit, _MAX_SEARCH_LIMIT))
        if not prefixes or limit == 0:
            return []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        ranges = []
        for prefix in prefixes:
            lo, hi = _prefix_range(prefix)
            ranges.append(f"(n.name_norm >= {arg(lo)} AND n.name_norm < {arg(hi)})")
        where = [f"({' OR '.join(ranges)})"]
        if profession is not None:
            codes = profession_codes(profession)
            if not codes:
                return []
            where.append(
                "EXISTS (SELECT 1 FROM directory_practitioner q WHERE q.import_id = n.import_id "
                f"AND q.idnps = n.idnps AND q.profession_code IN "
                f"({', '.join(arg(c) for c in codes)}))"
            )
        if city is not None:
            c = city.strip()
            if c.isascii() and c.isdigit():
                cond = f"a.postal_code LIKE {arg(c + '%')}"
            else:
                folded = fold(c)
                if not folded:
                    return []
                cond = f"a.city_norm LIKE {arg(folded + '%')}"
            where.append(
                "EXISTS (SELECT 1 FROM directory_activity a WHERE a.import_id = n.import_id "
                f"AND a.idnps = n.idnps AND {cond})"
            )
        limit_arg = arg(limit)
        query = (
            "WITH hits AS (SELECT n.import_id, n.idnps, n.name_norm FROM directory_name n "
            f"WHERE n.import_id = {_CURRENT} AND {' AND '.join(where)} "
            f"ORDER BY n.name_norm, n.idnps LIMIT {limit_arg}) "
            f"SELECT {_SELECT}, a.city, a.email FROM hits h "
            "JOIN directory_practitioner p ON p.import_id = h.import_id AND p.idnps = h.idnps "
            "LEFT JOIN directory_activity a ON a.import_id = h.import_id AND a.idnps = h.idnps "
            "ORDER BY h.name_norm, h.idnps, a.line_no"
        )
        rows = await self.db.fetch(query, *args)
        if not rows and await self._no_current_import():
            raise DirectoryUnavailable(_NO_IMPORT)
        return _practitioners(cast("Sequence[Mapping[str, Any]]", rows))
