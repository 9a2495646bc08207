"""The report: a human table (one line per check, the fix indented below) or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bridge.core.ports import TextPort
from bridge.homeserver_check.gate_checks import REQUIRED_CALLBACKS
from bridge.homeserver_check.model import Finding, Severity, State, exit_code

STATE_KEYS = {
    State.OK: "hscheck.ok",
    State.FIX: "hscheck.missing",
    State.NOT_CHECKED: "hscheck.not_run",
}


def _title(f: Finding, lang: str, text: TextPort) -> str:
    return text.t(f"hscheck.{f.id}", lang, cbs=", ".join(REQUIRED_CALLBACKS))


def _problem(f: Finding, lang: str, text: TextPort) -> str | None:
    if f.problem is None or f.ok:
        return None
    return text.t(f.problem, lang, **f.params)


def _fix(f: Finding, lang: str, text: TextPort) -> str | None:
    if f.state is not State.FIX or f.fix is None:
        return None
    return text.t(f.fix, lang, **f.fix_params)


def summary(findings: Sequence[Finding]) -> dict[str, int]:
    to_fix = [f for f in findings if f.state is State.FIX]
    return {
        "ok": sum(f.state is State.OK for f in findings),
        "fix": len(to_fix),
        "not_checked": sum(f.state is State.NOT_CHECKED for f in findings),
        "critical": sum(f.severity is Severity.CRITICAL for f in to_fix),
        "warning": sum(f.severity is Severity.WARNING for f in to_fix),
        "info": sum(f.severity is Severity.INFO for f in to_fix),
        "exit_code": exit_code(findings),
    }


def render(findings: Sequence[Finding], lang: str, text: TextPort) -> str:
    """``<severity> [STATE] <check> — <what is wrong>``, then the fix, indented."""
    width = max(len(text.t(f"hscheck.severity.{s.value}", lang)) for s in Severity)
    lines = []
    for f in findings:
        severity = text.t(f"hscheck.severity.{f.severity.value}", lang)
        line = f"{severity:<{width}}  [{text.t(STATE_KEYS[f.state], lang)}] {_title(f, lang, text)}"
        if (problem := _problem(f, lang, text)) is not None:
            line += f" — {problem}"
        lines.append(line)
        if (fix := _fix(f, lang, text)) is not None:
            lines.append(f"    → {fix}")
        if f.state is State.FIX and f.fix_yaml is not None:
            lines.append(f"    {text.t('hscheck.add_yaml', lang)}")
            lines += [f"      {row}" for row in f.fix_yaml.splitlines()]
    lines += ["", text.t("hscheck.summary", lang, **summary(findings))]
    return "\n".join(lines)


def as_json(findings: Sequence[Finding], lang: str, text: TextPort) -> dict[str, Any]:
    return {
        "findings": [
            {
                "id": f.id,
                "severity": f.severity.value,
                "state": f.state.value,
                "check": _title(f, lang, text),
                "problem": _problem(f, lang, text),
                "fix": _fix(f, lang, text),
                "fix_yaml": f.fix_yaml if f.state is State.FIX else None,
            }
            for f in findings
        ],
        "summary": summary(findings),
    }


def render_json(findings: Sequence[Finding], lang: str, text: TextPort) -> str:
    return json.dumps(as_json(findings, lang, text), ensure_ascii=False, indent=2)
