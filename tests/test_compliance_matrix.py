"""The compliance matrix (docs/compliance.md, docs/compliance.en.md) cites only real tests.

Every ``tests/<path>.py::<name>`` it cites must name a test function that exists: a
top-level ``def``/``async def test_*``, or ``::TestClass::test_*`` for a method of a
top-level ``class Test*`` (a parametrized test is cited without its ``[...]``). Both
versions must have the same rows (``### Cnn — title``) with the same status and the same
tests; a covered or partial row cites at least one test; a partial or out-of-scope row
says what is out of scope, a covered one does not.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = {"fr": ROOT / "docs" / "compliance.md", "en": ROOT / "docs" / "compliance.en.md"}

#: A cited test: a path under tests/, then one or two ``::`` names, maybe parameters.
REF = re.compile(r"tests/[\w/]+\.py::\w+(?:::\w+)?(?:\[[^\]\s`]*\])?")
ROW = re.compile(r"^### (C\d{2}) — (.+)$", re.MULTILINE)
SUMMARY_ROW = re.compile(r"^\| (C\d{2}) \|.*\| ([^|]+?) \|$", re.MULTILINE)
STATUS_LINE = {
    "fr": re.compile(r"^\*\*Statut :\*\* (.+)$", re.MULTILINE),
    "en": re.compile(r"^\*\*Status:\*\* (.+)$", re.MULTILINE),
}
#: Each language's words for a status, mapped to one vocabulary.
STATUSES = {
    "fr": {"couvert": "covered", "partiel": "partial", "hors périmètre": "out_of_scope"},
    "en": {"covered": "covered", "partial": "partial", "out of scope": "out_of_scope"},
}
OUT_OF_SCOPE = {"fr": "**Hors périmètre.**", "en": "**Out of scope.**"}

#: The high-availability row's proofs, written by the lead with the cluster work (issue
#: 11). Until they land, ``test_every_referenced_test_exists`` fails on exactly these two.
CLUSTER_REFS = frozenset(
    {
        "tests/cluster/test_failover.py::test_leader_killed_follower_takes_over",
        "tests/cluster/test_change_feed.py::test_unverify_reaches_other_replica_within_bound",
    }
)


@dataclass(frozen=True)
class Row:
    id: str
    title: str
    status: str  # covered, partial or out_of_scope; "" if the row has none
    refs: frozenset[str]
    says_out_of_scope: bool


def refs_in(text: str) -> set[str]:
    return set(REF.findall(text))


def parse_rows(text: str, lang: str) -> dict[str, Row]:
    """The detailed rows: each ``### Cnn — title`` up to the next heading."""
    heads = list(ROW.finditer(text))
    rows: dict[str, Row] = {}
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        body = text[head.end() : end]
        body = body.split("\n## ", 1)[0]  # a following level-2 section is not the row's
        status = STATUS_LINE[lang].search(body)
        assert head.group(1) not in rows, f"{lang}: row {head.group(1)} appears twice"
        rows[head.group(1)] = Row(
            id=head.group(1),
            title=head.group(2),
            status=STATUSES[lang].get(status.group(1).strip(), "") if status else "",
            refs=frozenset(refs_in(body)),
            says_out_of_scope=OUT_OF_SCOPE[lang] in body,
        )
    return rows


def parse_summary(text: str, lang: str) -> dict[str, str]:
    """The summary table: row ID → status (last cell)."""
    return {m.group(1): STATUSES[lang].get(m.group(2), "") for m in SUMMARY_ROW.finditer(text)}


def row_problems(rows: dict[str, Row], lang: str) -> list[str]:
    """What is wrong with each row's status, tests and out-of-scope paragraph."""
    problems = []
    for row in rows.values():
        if not row.status:
            problems.append(f"{lang} {row.id}: no status, or not one of {set(STATUSES[lang])}")
            continue
        if not row.refs and not row.says_out_of_scope:
            problems.append(f"{lang} {row.id}: neither a test nor {OUT_OF_SCOPE[lang]}")
        if row.status in {"covered", "partial"} and not row.refs:
            problems.append(f"{lang} {row.id}: {row.status} but cites no test")
        if row.status in {"partial", "out_of_scope"} and not row.says_out_of_scope:
            problems.append(f"{lang} {row.id}: {row.status} without {OUT_OF_SCOPE[lang]}")
        if row.status == "covered" and row.says_out_of_scope:
            problems.append(f"{lang} {row.id}: covered, yet says what is out of scope")
    return problems


@cache
def defined_tests(path: Path) -> frozenset[str]:
    """``test_x`` for top-level test functions, ``TestC::test_y`` for their methods."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if isinstance(node, functions) and node.name.startswith("test"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names.update(
                f"{node.name}::{m.name}"
                for m in node.body
                if isinstance(m, functions) and m.name.startswith("test")
            )
    return frozenset(names)


def missing(refs: set[str] | frozenset[str], root: Path = ROOT) -> dict[str, str]:
    """Each reference that names no test, with the reason."""
    problems: dict[str, str] = {}
    for ref in sorted(refs):
        path_text, _, name = ref.partition("::")
        name = name.split("[", 1)[0]
        path = root / path_text
        if not path.is_file():
            problems[ref] = "no such file"
        elif name not in defined_tests(path):
            problems[ref] = f"no test {name!r} in {path_text}"
    return problems


def load(lang: str) -> str:
    return DOCS[lang].read_text(encoding="utf-8")


# -- the matrix itself --------------------------------------------------------------------


def test_every_referenced_test_exists() -> None:
    refs = refs_in(load("fr")) | refs_in(load("en"))
    assert len(refs) > 50, "the parser found too few references"
    problems = missing(refs)
    assert not problems, "tests cited in docs/compliance*.md that do not exist:\n" + "\n".join(
        f"  {ref}: {why}" for ref, why in problems.items()
    )


def test_the_cluster_proofs_stay_required() -> None:
    """The high-availability row keeps citing the lead's cluster tests (removing them
    would make the row unproven, not the matrix true)."""
    for lang in DOCS:
        rows = parse_rows(load(lang), lang)
        ha = [row for row in rows.values() if row.refs & CLUSTER_REFS]
        assert len(ha) == 1, f"{lang}: one row must cite the cluster tests"
        assert ha[0].refs >= CLUSTER_REFS, f"{lang} {ha[0].id}: {CLUSTER_REFS - ha[0].refs}"
        assert ha[0].status == "covered"


def test_every_row_has_a_test_or_says_out_of_scope() -> None:
    for lang in DOCS:
        rows = parse_rows(load(lang), lang)
        assert len(rows) >= 30, f"{lang}: the parser found {len(rows)} rows"
        assert list(rows) == [f"C{i:02d}" for i in range(1, len(rows) + 1)], list(rows)
        assert not row_problems(rows, lang), "\n".join(row_problems(rows, lang))


def test_both_versions_say_the_same() -> None:
    fr_text, en_text = load("fr"), load("en")
    fr, en = parse_rows(fr_text, "fr"), parse_rows(en_text, "en")
    assert len(fr) == len(en)
    assert set(fr) == set(en)
    assert refs_in(fr_text) == refs_in(en_text)
    for id in fr:
        assert fr[id].status == en[id].status, f"{id}: {fr[id].status} / {en[id].status}"
        assert fr[id].refs == en[id].refs, (
            f"{id}: only in French {sorted(fr[id].refs - en[id].refs)}, "
            f"only in English {sorted(en[id].refs - fr[id].refs)}"
        )


def test_the_summary_tables_match_the_rows() -> None:
    for lang in DOCS:
        text = load(lang)
        rows, summary = parse_rows(text, lang), parse_summary(text, lang)
        assert summary == {id: row.status for id, row in rows.items()}


# -- the checks can fail ------------------------------------------------------------------


def test_a_made_up_name_is_reported_missing() -> None:
    here = "tests/test_compliance_matrix.py"
    assert missing({f"{here}::test_a_made_up_name_is_reported_missing"}) == {}
    assert missing({f"{here}::test_every_referenced_test_exists[fr-1]"}) == {}
    assert missing({f"{here}::test_that_nobody_wrote"}) == {
        f"{here}::test_that_nobody_wrote": f"no test 'test_that_nobody_wrote' in {here}"
    }
    assert missing({"tests/no_such_file.py::test_x"}) == {
        "tests/no_such_file.py::test_x": "no such file"
    }
    assert missing({f"{here}::refs_in"}) == {f"{here}::refs_in": f"no test 'refs_in' in {here}"}


def test_only_test_functions_and_test_class_methods_resolve(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(
        "def test_top(): pass\n"
        "async def test_async(): pass\n"
        "def helper():\n"
        "    def test_nested(): pass\n"
        "class TestThing:\n"
        "    def test_method(self): pass\n"
        "    async def test_async_method(self): pass\n"
        "    def helper(self): pass\n"
        "class Helper:\n"
        "    def test_not_collected(self): pass\n"
    )
    path = "tests/test_x.py"
    good = {
        f"{path}::test_top",
        f"{path}::test_async[a-b]",
        f"{path}::TestThing::test_method",
        f"{path}::TestThing::test_async_method",
    }
    bad = {
        f"{path}::helper",
        f"{path}::test_nested",
        f"{path}::test_method",
        f"{path}::TestThing::helper",
        f"{path}::Helper::test_not_collected",
        f"{path}::TestThing",
    }
    assert missing(good, tmp_path) == {}
    assert set(missing(bad, tmp_path)) == bad


def test_a_row_without_a_test_or_an_out_of_scope_mark_is_flagged() -> None:
    text = (
        "| C01 | a | b | couvert |\n\n"
        "### C01 — Cité\n\n**Statut :** couvert\n\n- `tests/test_x.py::test_a`\n\n"
        "### C02 — Ni test ni mention\n\n**Statut :** hors périmètre\n\nRien.\n\n"
        "### C03 — Partiel sans reste\n\n**Statut :** partiel\n\n- `tests/test_x.py::test_b`\n\n"
        "### C04 — Couvert sans test\n\n**Statut :** couvert\n\n**Hors périmètre.** Tout.\n\n"
        "### C05 — Statut inconnu\n\n**Statut :** presque\n\n- `tests/test_x.py::test_c`\n"
    )
    rows = parse_rows(text, "fr")
    assert rows["C01"].refs == {"tests/test_x.py::test_a"}
    assert row_problems({"C01": rows["C01"]}, "fr") == []
    problems = row_problems(rows, "fr")
    assert [p.split(":")[0] for p in problems] == [
        "fr C02",
        "fr C02",
        "fr C03",
        "fr C04",
        "fr C04",
        "fr C05",
    ]
    assert parse_summary(text, "fr") == {"C01": "covered"}


@pytest.mark.parametrize("lang", sorted(DOCS))
def test_the_parsers_read_the_real_files(lang: str) -> None:
    """Guards the regular expressions: a format change must not make the checks vacuous."""
    text = load(lang)
    rows = parse_rows(text, lang)
    assert frozenset().union(*(row.refs for row in rows.values())) == refs_in(text)
    assert {row.status for row in rows.values()} == {"covered", "partial", "out_of_scope"}
    assert len(parse_summary(text, lang)) == len(rows)
