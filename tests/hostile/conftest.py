"""Counting for the hostile-input tests: how many inputs each target really tried.

Each test takes the ``tally`` fixture and counts every example it ran; at the end of the
session the tallies go to ``<basetemp>/hostile-counts.json`` and one line per run in the
terminal summary, so a reliability run states its figures instead of trusting
``max_examples`` (hypothesis stops early when a strategy runs out of distinct inputs).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.budget import LONG_FACTOR, MODE, Tally

_TALLIES = pytest.StashKey[dict[str, Tally]]()
_OUTPUT = pytest.StashKey[Path]()
COUNTS_FILE = "hostile-counts.json"


def _tallies(config: pytest.Config) -> dict[str, Tally]:
    if _TALLIES not in config.stash:
        config.stash[_TALLIES] = {}
    return config.stash[_TALLIES]


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    """The example counter of this test (one per test ID, shared by all its examples)."""
    target = request.node.nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
    found = Tally(target=target.removeprefix("test_"))
    _tallies(request.config)[request.node.nodeid] = found
    yield found
    found.finish()


@pytest.fixture(scope="session", autouse=True)
def _write_counts(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Writes the tallies to ``<basetemp>/hostile-counts.json`` once every test ran."""
    yield
    tallies = _tallies(request.config)
    if not tallies:
        return
    out = tmp_path_factory.getbasetemp() / COUNTS_FILE
    body = {
        "mode": MODE,
        "long_factor": LONG_FACTOR if MODE == "long" else 1,
        "total_examples": sum(t.examples for t in tallies.values()),
        "tests": {nodeid: t.as_json() for nodeid, t in sorted(tallies.items())},
    }
    out.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    request.config.stash[_OUTPUT] = out


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    tallies = config.stash.get(_TALLIES, {})
    if not tallies:
        return
    per_target: dict[str, int] = {}
    for t in tallies.values():
        per_target[t.target] = per_target.get(t.target, 0) + t.examples
    detail = ", ".join(f"{k} {v}" for k, v in sorted(per_target.items()))
    where = config.stash.get(_OUTPUT, None)
    terminalreporter.write_line(
        f"hostile input ({MODE}): {sum(per_target.values())} inputs tried: {detail}"
        + (f" (counts in {where})" if where else "")
    )
