"""Every finding renders in French and English with the strict catalog (no missing key,
no missing parameter), as a table and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.app.wiring import build_translator
from bridge.homeserver_check import (
    Finding,
    LiveTarget,
    State,
    as_json,
    check_homeserver,
    render,
    render_json,
)
from bridge.homeserver_check.live import classify, skipped
from bridge.homeserver_check.model import Severity, not_checked
from bridge.homeserver_check.text import CATALOG
from tests.homeserver_check.configs import NETWORK, antispam, good
from tests.homeserver_check.test_checks_table import CASES

# Reached in tests/test_homeserver_check.py (the gate's checks) and by the live check.
NOT_REACHED_HERE: set[str] = set()
TARGET = LiveTarget("https://hs.example", "@santeguard_control:hs.example", as_token="t0ken-x")


def every_finding(registration: Path) -> list[Finding]:
    out: list[Finding] = []
    for mutate, _ in CASES.values():
        hs = good(registration)
        mutate(hs)
        out += check_homeserver(hs, registration, network=NETWORK)
        out += check_homeserver(hs, None)
    out += check_homeserver({}, registration / "missing")
    missing = good(registration / "missing")
    out += check_homeserver(missing, registration / "missing")
    out += check_homeserver(good(registration / "other"), registration)
    for variant in ("unlisted", "unanswered", "open"):
        hs = good(registration)
        spam = antispam(hs)
        if variant == "unlisted":
            del spam["enabled_callbacks"]
        elif variant == "unanswered":
            spam["enabled_callbacks"].append("user_may_publish_room")
        else:
            spam["fail_open"]["user_may_invite"] = True
        out += check_homeserver(hs, registration)
    out.append(
        not_checked(
            "enforcer_admin",
            Severity.CRITICAL,
            "hscheck.hint.unreachable",
            address="http://127.0.0.1:9",
            error="ClientConnectorError",
        )
    )
    out += [
        classify(status, body, TARGET)
        for status, body in (
            (200, {"admin": False}),
            (403, {"error": "Application service has not registered this user"}),
            (401, None),
            (500, None),
        )
    ]
    out += [skipped("hscheck.hint.live_skipped")]
    return out


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_every_finding_renders(tmp_path: Path, lang: str) -> None:
    registration = tmp_path / "registration.yaml"
    registration.write_text("id: santeguard\n")
    found = every_finding(registration)
    problems = {f.problem for f in found if f.problem} | {f.fix for f in found if f.fix}
    catalog = {k for k in CATALOG["fr"] if k.startswith(("hscheck.hint.", "hscheck.fix."))}
    assert catalog - problems == NOT_REACHED_HERE
    text = build_translator(strict=True)
    table = render(found, lang, text)
    assert "hscheck." not in table  # no key shown raw
    report = json.loads(render_json(found, lang, text))
    assert len(report["findings"]) == len(found)
    for f, shown in zip(found, as_json(found, lang, text)["findings"], strict=True):
        assert (shown["problem"] is None) == (f.problem is None or f.ok)
        assert (shown["fix_yaml"] is None) == (f.state is not State.FIX or f.fix_yaml is None)
