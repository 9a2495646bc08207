"""Hostile Annuaire Santé extracts (``PS_LibreAcces_Personne_activite``) at volume.

Files built from the sample's header and lines, then broken the ways a truncated
download, a wrong file or a hostile mirror breaks them: BOMs, shuffled, duplicated or
missing columns, wrong column counts, bytes that are not UTF-8, NUL, lone CR, giant
fields, identifiers that fail their key or disagree with the national ID. The reader
raises only ``ExtractFormatError`` (for the file as a whole), accounts for every line
(kept or rejected with a reason), and what it keeps can be stored by any database.
Memory is bounded by the file's size. An import of such lines on SQLite and PostgreSQL
rejects the bad lines and keeps the others.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from mautrix.util.async_db import Database

from bridge.identity.sources.extract import import_extract
from bridge.identity.sources.extract.parse import ExtractFormatError, _ExtractReader
from tests.hostile.budget import MiB, Tally, budget

SAMPLE = (
    Path(__file__).resolve().parent.parent / "data" / "PS_LibreAcces_Personne_activite_sample.txt"
)
HEADER, *LINES = SAMPLE.read_text(encoding="utf-8").splitlines()
NAMES = HEADER.split("|")

NASTY_FIELD = st.sampled_from(
    [
        "\x00",
        "a\x00b",
        "\ufffd",
        "\ufeff",
        "\u202e",
        "é" * 3000,
        " ",
        "",
        "|",
        "8",
        "0",
        "10101010101",
        "810101010101",
        "1234567890123",
        "٣٣٣",
        "１２３",
        "'; DROP TABLE x; --",
    ]
)
RAW_BYTES = st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\r", b"\xef\xbb\xbf"])


@st.composite
def header(draw: st.DrawFn) -> tuple[str, list[str]]:
    names = list(NAMES)
    action = draw(st.sampled_from(["keep", "keep", "shuffle", "drop", "duplicate", "garble"]))
    if action == "shuffle":
        names = draw(st.permutations(names))
    elif action == "drop":
        del names[draw(st.integers(0, len(names) - 1))]
    elif action == "duplicate":
        names.append(names[draw(st.integers(0, len(names) - 1))])
    elif action == "garble":
        names[draw(st.integers(0, len(names) - 1))] = draw(NASTY_FIELD)
    bom = draw(st.sampled_from(["", "\ufeff", "\ufeff\ufeff"]))
    trailing = draw(st.sampled_from(["", "|"]))
    return bom + "|".join(names) + trailing, names


@st.composite
def line(draw: st.DrawFn, names: list[str]) -> bytes:
    base = dict(zip(NAMES, draw(st.sampled_from(LINES)).split("|"), strict=False))
    fields = [base.get(n, "") for n in names]
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(fields) - 1))
        fields[i] = draw(st.one_of(NASTY_FIELD, st.text(max_size=12)))
    cut = draw(st.integers(0, 6))
    if cut == 0:
        fields = fields[: draw(st.integers(0, len(fields)))]
    elif cut == 1:
        fields += draw(st.lists(st.text(max_size=3), min_size=1, max_size=3))
    raw = "|".join(fields).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 5)) == 0:
        pos = draw(st.integers(0, len(raw)))
        raw = raw[:pos] + draw(RAW_BYTES) + raw[pos:]
    return raw


@st.composite
def extracts(draw: st.DrawFn) -> bytes:
    head, names = draw(header())
    eol = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    body = [draw(line(names)) for _ in range(draw(st.integers(0, 30)))]
    if draw(st.integers(0, 9)) == 0:  # one huge line without an end
        body.append(b"8|" + b"x" * draw(st.integers(10_000, 200_000)))
    return head.encode() + eol + eol.join(body) + draw(st.sampled_from([eol, b""]))


def _storable(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return "\x00" not in value and "\ufffd" not in value and value.encode("utf-8") is not None


def read_all(
    path: Path,
) -> tuple[_ExtractReader, list[tuple[object, ...]], list[tuple[object, ...]]]:
    reader = _ExtractReader(path, batch_size=7, max_examples=3, check_adeli_key=True)
    people: list[tuple[object, ...]] = []
    sites: list[tuple[object, ...]] = []
    try:
        while (batch := reader.read_batch()).lines:
            people += batch.practitioners
            sites += batch.activities
    finally:
        reader.close()
    return reader, people, sites


def test_reader_accounts_for_every_line(tally: Tally) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "extract.txt"

        @budget(250)
        @given(data=extracts())
        def example(data: bytes) -> None:
            path.write_bytes(data)
            try:
                with tally.memory(len(data), allowance=4 * MiB, per_byte=12):
                    reader, people, sites = read_all(path)
            except ExtractFormatError:
                tally.count("file_refused")
                return
            rejected = sum(r.count for r in reader.rejections.values())
            assert reader.rows_kept + rejected == reader.rows_read
            for row in (*people, *sites):
                assert all(_storable(v) for v in row), row
            for row in people:
                _, idnps, kind, identifier = row[:4]
                assert kind in ("rpps", "adeli") and str(idnps).endswith(str(identifier))
            tally.count("read_with_rejects" if rejected else "read_clean")

        example()


async def test_import_rejects_nul_and_bad_bytes_and_keeps_the_rest(
    db: Database, tmp_path: Path, tally: Tally
) -> None:
    """A NUL or a non-UTF-8 byte rejects its line; it does not fail the whole import
    (PostgreSQL refuses NUL in text: the line used to reach COPY and abort it)."""
    good = [line.encode() for line in LINES]
    first = LINES[0].split("|")
    bad: list[bytes] = []
    for value in ("DUPONT\x00", "\x00", "CAF\udce9"):  # \udce9: the lone byte 0xE9
        fields = list(first)
        fields[NAMES.index("Nom d'exercice")] = value
        bad.append("|".join(fields).encode("utf-8", "surrogateescape"))
    fields = list(first)
    fields[NAMES.index("Libellé commune (coord. structure)")] = "PARIS\x00"
    bad.append("|".join(fields).encode())
    path = tmp_path / "extract.txt"
    path.write_bytes(HEADER.encode() + b"\n" + b"\n".join([*good, *bad]) + b"\n")
    report = await import_extract(db, path)
    assert report.rows_read == len(good) + len(bad)
    assert report.rejections["bad_encoding"].count == len(bad)
    assert report.rows_kept == len(good)
    tally.count("imported")
