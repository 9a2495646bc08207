"""One text catalog: every user-facing text exists in French and English, same placeholders.

Command replies, gate refusals, notices, alerts, CLI reports and the demo's narration are
all catalog keys rendered by ``bot.i18n.Translator``. The catalog is the framework's own
texts merged with each capability's (``bridge.app.wiring.build_translator``); a key
redefined by two capabilities fails the merge. Keys used in the code are found by reading
the source, so a key used but never written fails here, not in front of a practitioner.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from bot.i18n import placeholders
from bridge.app.wiring import build_translator
from bridge.devtools.demo_text import CATALOG as DEMO_CATALOG

ROOT = Path(__file__).resolve().parent.parent
APP_CATALOGS = build_translator(strict=True).catalogs
CATALOGS: dict[str, Mapping[str, Mapping[str, str]]] = {
    "application": APP_CATALOGS,
    "demo": DEMO_CATALOG,
}
# Calls whose first argument is a catalog key.
KEY_CALLS = {"reply_t", "t", "CommandError", "alert", "bilingual", "say"}


@pytest.mark.parametrize("name", sorted(CATALOGS))
def test_same_keys_in_french_and_english(name: str) -> None:
    fr, en = CATALOGS[name]["fr"], CATALOGS[name]["en"]
    assert sorted(set(fr) - set(en)) == [], "keys missing in English"
    assert sorted(set(en) - set(fr)) == [], "keys missing in French"


@pytest.mark.parametrize("name", sorted(CATALOGS))
def test_same_placeholders_in_both_languages(name: str) -> None:
    fr, en = CATALOGS[name]["fr"], CATALOGS[name]["en"]
    differ = [k for k in fr if placeholders(fr[k]) != placeholders(en.get(k, ""))]
    assert differ == []


def _key_literals(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        first = node.args[0]
        if name in KEY_CALLS and isinstance(first, ast.Constant) and isinstance(first.value, str):
            yield node.lineno, first.value


def _source_files(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


def test_every_key_used_in_the_code_exists() -> None:
    demo = {ROOT / "bridge/devtools/demo.py", ROOT / "bridge/devtools/demo_mail.py"}
    missing = []
    for path in _source_files("bridge", "bot"):
        catalog = DEMO_CATALOG if path in demo else APP_CATALOGS
        for line, key in _key_literals(path):
            if key not in catalog["fr"]:
                missing.append(f"{path.relative_to(ROOT)}:{line}: {key}")
    assert missing == []


def test_every_refusal_reason_has_a_text() -> None:
    """``Decision.no("r", …)`` is rendered as ``gate.reason.r``; reasons passed on by name
    (``reason="…"`` to the enforcer) too."""
    reasons: set[str] = set()
    for path in _source_files("bridge"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "no" and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    reasons.add(arg.value)
            for kw in node.keywords:
                if kw.arg == "reason" and isinstance(kw.value, ast.Constant):
                    if isinstance(kw.value.value, str) and "_" in kw.value.value:
                        reasons.add(kw.value.value)
    assert reasons, "found no refusal reasons: the scan is broken"
    assert sorted(r for r in reasons if f"gate.reason.{r}" not in APP_CATALOGS["fr"]) == []


def test_the_scan_sees_keys() -> None:
    """The source scan must find the keys it is meant to check (else it proves nothing)."""
    keys = {k for p in _source_files("bridge") for _, k in _key_literals(p)}
    assert {"identity.verified", "alert.remove_failed", "gate.room_usage"} <= keys
    assert "audit_ok" in {k for _, k in _key_literals(ROOT / "bridge/devtools/demo.py")}
    assert "mail_same" in {k for _, k in _key_literals(ROOT / "bridge/devtools/demo_mail.py")}
