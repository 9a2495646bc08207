"""Lookups and searches over the current imported extract (``directory_*`` tables)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from mautrix.util.async_db import Database

from bridge.identity.identifiers import parse_identifier
from bridge.identity.model import (
    DirectoryUnavailable,
    Practitioner,
    fold,
    profession_codes,
    profession_label,
)

_MAX_SEARCH_LIMIT = 200
_SELECT = (
    "p.idnps, p.id_kind, p.identifier, p.last_name, p.first_name, p.civility, "
    "p.practice_civility, p.profession_code, p.profession_label, p.skill_type, "
    "p.skill_code, p.skill_label"
)
_NO_IMPORT = "no Annuaire Santé extract has been imported yet"
# A scalar subquery, evaluated once: the planners then search by primary-key prefix
# instead of scanning (SQLite, without ANALYZE statistics, otherwise picks a scan).
_CURRENT = "(SELECT id FROM directory_import WHERE is_current)"


async def current_import_id(db: Database) -> int | None:
    """The id of the current import, or None before the first one.

    Changes exactly when an import is switched in, so a caller polling it learns that
    the directory was replaced.
    """
    value = await db.fetchval("SELECT id FROM directory_import WHERE is_current")
    return None if value is None else int(value)


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
        return await current_import_id(self.db) is None

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
