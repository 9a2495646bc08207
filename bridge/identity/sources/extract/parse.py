"""Parser of the Annuaire Santé ``PS_LibreAcces_Personne_activite`` extract.

The file is ~2 million pipe-separated lines (one per practitioner per activity site).
The reader validates every line, keeps the rejects' reasons for the report, and yields
batches of ready-to-insert tuples, so the importer only writes. It is synchronous and
database-free: it runs in a worker thread, and can be tested on its own.

Columns are found by header name, not position: the layout has grown from 48 to 56
columns over the years and at least one variant spells some names differently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Final

from bridge.identity.identifiers import IdentifierError, IdKind, check_number
from bridge.identity.model import fold

# Rejection reasons, as they appear in ImportReport.rejections.
WRONG_COLUMN_COUNT: Final = "wrong_column_count"
BAD_ENCODING: Final = "bad_encoding"
UNKNOWN_IDENTIFIER_TYPE: Final = "unknown_identifier_type"
INVALID_IDENTIFIER: Final = "invalid_identifier"
IDNPS_MISMATCH: Final = "idnps_mismatch"
MISSING_NAME: Final = "missing_name"

_KINDS: Mapping[str, IdKind] = MappingProxyType({"8": "rpps", "0": "adeli"})

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

# The layout of the tuples in a _Batch, i.e. the columns the importer writes them to.
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


class ExtractFormatError(ValueError):
    """The file as a whole is unusable (no header, required column missing, no valid row)."""


@dataclass(slots=True)
class RejectionStats:
    """How many lines were refused for one reason, with the first few line numbers."""

    count: int = 0
    examples: list[tuple[int, str]] = field(default_factory=list)


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
        if "\x00" in line:
            # No PostgreSQL text column takes a NUL: kept, it made the COPY and with it
            # the whole import fail.
            self._reject(BAD_ENCODING, "NUL byte")
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
