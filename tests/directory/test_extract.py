"""Extract import and lookups, on SQLite and PostgreSQL (the ``db`` fixture).

Expected counts are computed from the sample file with a naive independent parse, so
the tests follow the sample if it changes and fail if the importer miscounts.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from mautrix.util.async_db import Database

from bridge.identity.identifiers import IdentifierError
from bridge.identity.model import DirectoryLookup, DirectoryUnavailable
from bridge.identity.sources.extract import (
    ExtractDirectory,
    ExtractFormatError,
    ImportSuperseded,
    import_extract,
    importer,
    parse,
)

SAMPLE_NAME = "PS_LibreAcces_Personne_activite_sample.txt"


@pytest.fixture
def sample(data_dir: Path) -> Path:
    return data_dir / SAMPLE_NAME


def naive(path: Path) -> tuple[list[str], list[list[str]]]:
    header, *lines = path.read_text(encoding="utf-8").splitlines()
    names = header.split("|")[:-1]
    return names, [line.split("|")[:-1] for line in lines if line]


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def row_dict(names: list[str], fields: list[str]) -> dict[str, str]:
    return dict(zip(names, fields, strict=True))


def write(path: Path, header: str, lines: list[str], *, bom: bool = False, eol: str = "\n") -> Path:
    text = eol.join([header, *lines]) + eol
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


async def counts(db: Database) -> dict[int, tuple[int, int, int]]:
    """Rows per import id in each table: proves old imports are really gone."""
    out: dict[int, tuple[int, int, int]] = {}
    for r in await db.fetch("SELECT id FROM directory_import"):
        i = int(r["id"])
        n = [
            int(await db.fetchval(f"SELECT COUNT(*) FROM {t} WHERE import_id = $1", i))
            for t in ("directory_practitioner", "directory_activity", "directory_name")
        ]
        out[i] = (n[0], n[1], n[2])
    return out


async def test_schema_tables(db: Database) -> None:
    for table in ("directory_import", "directory_practitioner", "directory_activity"):
        assert await db.table_exists(table)


async def test_sample_imports_with_the_right_counts(db: Database, sample: Path) -> None:
    names, rows = naive(sample)
    people = {r[names.index("Identification nationale PP")] for r in rows}
    with_site = [r for r in rows if r[names.index("Libellé commune (coord. structure)")]]

    report = await import_extract(db, sample, batch_size=4)  # several batches

    assert report.rows_read == report.rows_kept == len(rows)
    assert report.rows_rejected == 0 and not report.rejections
    assert report.practitioners == len(people)
    assert report.activities == len(with_site)
    assert report.source_name == SAMPLE_NAME
    imp = await db.fetchrow("SELECT * FROM directory_import WHERE id = $1", report.import_id)
    assert imp is not None
    assert (imp["status"], bool(imp["is_current"])) == ("done", True)
    assert int(imp["rows_read"]) == len(rows) and int(imp["practitioners"]) == len(people)
    assert (await counts(db))[report.import_id] == (len(people), len(with_site), len(people))


async def test_lookup_matches_the_file(db: Database, sample: Path) -> None:
    names, rows = naive(sample)
    await import_extract(db, sample)
    directory: DirectoryLookup = ExtractDirectory(db)
    for fields in random.Random(7).sample(rows, 10):
        r = row_dict(names, fields)
        p = await directory.lookup(r["Identification nationale PP"])
        assert p is not None
        assert p.identifier == r["Identifiant PP"]
        assert p.id_kind == ("rpps" if r["Type d'identifiant PP"] == "8" else "adeli")
        assert (p.last_name, p.first_name) == (r["Nom d'exercice"], r["Prénom d'exercice"])
        assert p.profession_code == r["Code profession"]
        assert p.profession_label == r["Libellé profession"]
        assert p.active
        expected_cities = {
            row_dict(names, f)["Libellé commune (coord. structure)"]
            for f in rows
            if f[2] == fields[2]
        } - {""}
        assert set(p.cities) == expected_cities
    modele = await directory.lookup("10999990038")  # RPPS form accepted too
    assert modele is not None and modele.civility == "Professeur"
    assert modele.cities == (
        "Paris 11e Arrondissement",
        "Paris 15e Arrondissement",
        "Lyon 3e Arrondissement",
    )
    adeli = await directory.lookup("759 399 017")
    assert adeli is not None and adeli.idnps == "0759399017" and adeli.id_kind == "adeli"
    ancien = await directory.lookup("810999990053")  # no structure at all
    assert ancien is not None and ancien.cities == ()
    assert await directory.lookup("10000001916") is None  # valid, not in the extract
    with pytest.raises(IdentifierError):
        await directory.lookup("10999990013")


async def test_nothing_imported_is_unavailable_not_absent(db: Database) -> None:
    directory = ExtractDirectory(db)
    with pytest.raises(DirectoryUnavailable):
        await directory.lookup("810999990012")
    with pytest.raises(DirectoryUnavailable):
        await directory.search("exemple", None, None, 5)


async def test_malformed_lines_are_rejected_with_reasons(
    db: Database, sample: Path, tmp_path: Path
) -> None:
    header, *good = read_lines(sample)
    base = good[0].split("|")  # 8|10999990012|810999990012|…

    def variant(**changes: str) -> str:
        f = list(base)
        for i, v in changes.items():
            f[int(i[1:])] = v
        return "|".join(f)

    bad = {
        "wrong_column_count": "|".join(base[:20]) + "|",
        "invalid_identifier": variant(f1="10999990013", f2="810999990013"),
        "unknown_identifier_type": variant(f0="5"),
        "idnps_mismatch": variant(f2="810999990020"),
        "missing_name": variant(f7=""),
    }
    not_digits = variant(f1="1099999001X", f2="81099999001X")
    lines = [*good, *bad.values(), not_digits]
    path = write(tmp_path / "extract.txt", header, lines, bom=True, eol="\r\n")
    # One line with bytes that are not UTF-8.
    raw = path.read_bytes() + variant(f7="CAF\x00").encode().replace(b"\x00", b"\xe9") + b"\r\n"
    path.write_bytes(raw)

    report = await import_extract(db, path, max_examples=3)

    assert report.rows_read == len(good) + len(bad) + 2
    assert report.rows_kept == len(good)
    assert report.rows_rejected == len(bad) + 2
    for reason, line in bad.items():
        line_no = lines.index(line) + 2  # 1-based, after the header
        assert reason in report.rejections, reason
        assert line_no in [n for n, _ in report.rejections[reason].examples]
    assert report.rejections["invalid_identifier"].count == 2
    details = [d for _, d in report.rejections["invalid_identifier"].examples]
    assert details == ["rpps: bad_check_key", "rpps: not_digits"]
    assert report.rejections["bad_encoding"].count == 1
    assert report.rejections["bad_encoding"].examples[0][0] == len(lines) + 2
    # The good lines are all there, BOM and CRLF notwithstanding.
    _, rows = naive(sample)
    assert report.practitioners == len({r[2] for r in rows})
    p = await ExtractDirectory(db).lookup("810999990012")
    assert p is not None and p.last_name == "EXEMPLE"


async def test_columns_are_found_by_name_not_position(
    db: Database, sample: Path, tmp_path: Path
) -> None:
    names, rows = naive(sample)
    order = list(range(len(names)))
    random.Random(3).shuffle(order)
    # No trailing separator this time, and a variant spelling of one header.
    shuffled_names = [names[i] for i in order]
    k = shuffled_names.index("Libellé civilité d'exercice")
    shuffled_names[k] = "Libellé civilité exercice"
    lines = ["|".join(r[i] for i in order) for r in rows]
    path = write(tmp_path / "shuffled.txt", "|".join(shuffled_names), lines)

    report = await import_extract(db, path)

    assert report.rows_kept == len(rows) and report.rows_rejected == 0
    p = await ExtractDirectory(db).lookup("810999990038")
    assert p is not None
    assert (p.last_name, p.civility, p.profession_code) == ("MODELE", "Professeur", "10")
    assert len(p.cities) == 3


async def test_missing_required_column_fails_and_keeps_previous(
    db: Database, sample: Path, tmp_path: Path
) -> None:
    first = await import_extract(db, sample)
    header, *lines = read_lines(sample)
    path = write(tmp_path / "bad.txt", header.replace("Nom d'exercice", "Nom"), lines)
    with pytest.raises(ExtractFormatError, match="Nom d'exercice"):
        await import_extract(db, path)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ExtractFormatError):
        await import_extract(db, empty)
    assert await db.fetchval("SELECT id FROM directory_import WHERE is_current") == first.import_id
    assert await ExtractDirectory(db).lookup("810999990012") is not None


async def test_mostly_rejected_file_does_not_replace_the_directory(
    db: Database, sample: Path, tmp_path: Path
) -> None:
    first = await import_extract(db, sample)
    header, *good = read_lines(sample)
    broken = ["5" + line[1:] for line in good]  # unknown identifier type
    path = write(tmp_path / "broken.txt", header, [*good[:3], *broken])
    with pytest.raises(ExtractFormatError, match="rejected"):
        await import_extract(db, path)
    current = await db.fetchval("SELECT id FROM directory_import WHERE is_current")
    assert current == first.import_id
    failed = await db.fetchrow("SELECT * FROM directory_import WHERE id <> $1", first.import_id)
    assert failed is not None and failed["status"] == "failed"
    assert (await counts(db))[int(failed["id"])] == (0, 0, 0)  # its rows were dropped


async def test_non_adjacent_repeat_is_one_practitioner(
    db: Database, sample: Path, tmp_path: Path
) -> None:
    header, *lines = read_lines(sample)
    # Move the first line to the end, after other people: not adjacent any more.
    moved = [*lines[1:], lines[0], lines[0]]
    path = write(tmp_path / "moved.txt", header, moved)
    report = await import_extract(db, path, batch_size=5)
    _, rows = naive(sample)
    assert report.practitioners == len({r[2] for r in rows})
    n = await db.fetchval(
        "SELECT COUNT(*) FROM directory_activity WHERE idnps = '810999990012' AND import_id = $1",
        report.import_id,
    )
    assert n == 2


async def test_reimport_replaces_atomically(db: Database, sample: Path, tmp_path: Path) -> None:
    header, *lines = read_lines(sample)
    old = await import_extract(db, sample)
    _, rows = naive(sample)
    old_people = len({r[2] for r in rows})
    # New file: ANCIEN gone, EXEMPLE renamed, MODELE has one site left, plus 40 new people.
    new_lines = [x for x in lines if "|810999990053|" not in x]
    new_lines = [x.replace("|EXEMPLE|Julien|", "|EXEMPLE-NOUVEAU|Julien|") for x in new_lines]
    modele = [x for x in new_lines if "|810999990038|" in x]
    new_lines = [x for x in new_lines if x not in modele[1:]]
    template = lines[0].split("|")
    for i in range(40):
        payload = f"1099998{i:03d}"
        rpps = payload + next(k for k in "0123456789" if _luhn(payload + k))
        f = list(template)
        f[1], f[2], f[7] = rpps, "8" + rpps, f"NOUVEAU{i:02d}"
        new_lines.append("|".join(f))
    new_path = write(tmp_path / "new.txt", header, new_lines)
    new_people = old_people - 1 + 40

    directory = ExtractDirectory(db)
    seen: set[int] = set()
    done = asyncio.Event()

    async def reader() -> None:
        # Readers during the import see exactly the old or exactly the new directory.
        while not done.is_set():
            ids = await db.fetch(
                "SELECT COUNT(*) AS n FROM directory_practitioner "
                "WHERE import_id = (SELECT id FROM directory_import WHERE is_current)"
            )
            seen.add(int(ids[0]["n"]))
            exemple = await directory.lookup("810999990012")
            assert exemple is not None
            assert exemple.last_name in ("EXEMPLE", "EXEMPLE-NOUVEAU")
            await asyncio.sleep(0)

    task = asyncio.create_task(reader())
    try:
        new = await import_extract(db, new_path, batch_size=3)
    finally:
        done.set()
        await task
    seen.add(int(await db.fetchval("SELECT practitioners FROM directory_import WHERE is_current")))
    assert seen <= {old_people, new_people}
    assert new_people in seen

    assert new.practitioners == new_people
    assert await directory.lookup("810999990053") is None
    exemple = await directory.lookup("810999990012")
    assert exemple is not None and exemple.last_name == "EXEMPLE-NOUVEAU"
    modele_p = await directory.lookup("810999990038")
    assert modele_p is not None and len(modele_p.cities) == 1
    assert [p.last_name for p in await directory.search("nouveau0", None, None, 50)] == [
        f"NOUVEAU{i:02d}" for i in range(10)
    ]
    # The old import's rows are gone, its record kept for history.
    table = await counts(db)
    assert table[old.import_id] == (0, 0, 0)
    assert table[new.import_id][0] == new_people
    statuses = {
        int(r["id"]): (r["status"], bool(r["is_current"]))
        for r in await db.fetch("SELECT id, status, is_current FROM directory_import")
    }
    assert statuses == {old.import_id: ("replaced", False), new.import_id: ("done", True)}
    # Idempotent: the same file again gives the same directory.
    again = await import_extract(db, new_path)
    assert again.practitioners == new.practitioners
    assert (await counts(db))[again.import_id] == table[new.import_id]


async def test_superseded_import_does_not_become_current(db: Database, sample: Path) -> None:
    stale = await importer._start_import(db, "stale.txt")
    report = await import_extract(db, sample)  # abandons the "running" stale import
    reader = parse._ExtractReader(sample, batch_size=10, max_examples=1, check_adeli_key=True)
    reader.close()
    with pytest.raises(ImportSuperseded):
        await importer._switch(db, stale, reader, 0)
    assert await db.fetchval("SELECT id FROM directory_import WHERE is_current") == report.import_id
    assert await db.fetchval("SELECT status FROM directory_import WHERE id = $1", stale) == (
        "abandoned"
    )


async def test_search(db: Database, sample: Path) -> None:
    await import_extract(db, sample)
    d = ExtractDirectory(db)

    async def names(*args: object) -> list[str]:
        return [p.full_name for p in await d.search(*args)]  # type: ignore[arg-type]

    assert await names("fictive", None, None, 10) == ["Claire FICTIVE"]
    assert await names("Claire Fictive", None, None, 10) == ["Claire FICTIVE"]  # rotated
    assert await names("COMPRESSE élodie", None, None, 10) == ["Élodie COMPRESSE"]
    assert await names("compresse elodie", None, None, 10) == ["Élodie COMPRESSE"]
    assert await names("m", None, None, 10) == [
        "Thomas MASSAGE",
        "Antoine MODELE",
        "Paul MOLAIRE",
    ]
    assert await names("m", None, None, 2) == ["Thomas MASSAGE", "Antoine MODELE"]
    assert await names("m", "médecin", None, 10) == ["Antoine MODELE"]
    assert await names("m", "70", None, 10) == ["Thomas MASSAGE"]
    assert await names("m", None, "strasbourg", 10) == ["Paul MOLAIRE"]
    assert await names("m", None, "Lyon", 10) == ["Antoine MODELE"]
    assert await names("m", None, "750", 10) == ["Antoine MODELE"]  # postal code prefix
    assert await names("m", "astronaute", None, 10) == []
    assert await names("", None, None, 10) == []
    assert await names("zzz", None, None, 10) == []
    prisme = await d.search("prisme", None, None, 10)
    assert len(prisme) == 1 and prisme[0].id_kind == "adeli" and prisme[0].cities == ("Nantes",)


def _luhn(s: str) -> bool:
    t = 0
    for i, c in enumerate(reversed(s)):
        d = int(c) * (2 if i % 2 else 1)
        t += d - 9 if d > 9 else d
    return t % 10 == 0
