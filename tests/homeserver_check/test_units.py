"""The small pure parts: Synapse durations, purge-job coverage, the live answer's meaning."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bridge.homeserver_check import LiveTarget, Severity, State
from bridge.homeserver_check.live import admin_path, classify
from bridge.homeserver_check.model import duration_text, synapse_duration
from bridge.homeserver_check.retention_checks import first_gap

DAY = 86_400_000


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (1000, 1000),
        ("1000", 1000),
        ("30s", 30_000),
        ("5m", 300_000),
        ("12h", 12 * 3_600_000),
        ("180d", 180 * DAY),
        ("2w", 14 * DAY),
        ("1y", 365 * DAY),
        (True, None),
        (1.5, None),
        ("", None),
        ("6mo", None),
        ("d", None),
        ("-1d", None),
        (None, None),
    ],
)
def test_synapse_duration(value: Any, ms: int | None) -> None:
    assert synapse_duration(value) == ms


@pytest.mark.parametrize(
    ("ms", "text"),
    [(DAY, "1d"), (180 * DAY, "180d"), (14 * DAY, "2w"), (365 * DAY, "1y"), (1500, "1500")],
)
def test_duration_text_reads_back(ms: int, text: str) -> None:
    assert duration_text(ms) == text
    assert synapse_duration(text) == ms


Job = tuple[int, int | None, int | None]


@pytest.mark.parametrize(
    ("jobs", "low", "high", "gap"),
    [
        ([(DAY, None, None)], 1, math.inf, None),
        ([(DAY, None, 30 * DAY), (DAY, 30 * DAY, None)], 1, math.inf, None),
        ([(DAY, None, 30 * DAY)], 1, math.inf, (30 * DAY + 1, math.inf)),
        ([(DAY, 30 * DAY, None)], DAY, 365 * DAY, (DAY, 30 * DAY)),
        ([(DAY, None, 30 * DAY), (DAY, 90 * DAY, None)], DAY, 365 * DAY, (30 * DAY + 1, 90 * DAY)),
        # (shortest, longest]: a room at exactly the shortest value is not purged.
        ([(DAY, DAY, None)], DAY, 365 * DAY, (DAY, DAY)),
        ([(DAY, 0, 365 * DAY)], DAY, 365 * DAY, None),
        ([(DAY, None, 100 * DAY), (DAY, 50 * DAY, 400 * DAY)], DAY, 365 * DAY, None),
    ],
)
def test_first_gap(jobs: list[Job], low: int, high: float, gap: tuple[float, float] | None) -> None:
    assert first_gap(jobs, low, high) == gap


TARGET = LiveTarget(
    address="https://matrix.example/",
    enforcer="@santeguard_control:example",
    as_token="as-secret-token-value",
)


@pytest.mark.parametrize(
    ("status", "body", "state", "problem"),
    [
        (200, {"admin": True}, State.OK, None),
        (200, {"admin": False}, State.FIX, "hscheck.hint.enforcer_not_admin"),
        (
            403,
            {"errcode": "M_FORBIDDEN", "error": "You are not a server admin"},
            State.FIX,
            "hscheck.hint.enforcer_not_admin",
        ),
        (
            403,
            {
                "errcode": "M_FORBIDDEN",
                "error": "Application service has not registered this user (@x:example)",
            },
            State.FIX,
            "hscheck.hint.enforcer_unregistered",
        ),
        (401, {"errcode": "M_UNKNOWN_TOKEN"}, State.FIX, "hscheck.hint.as_token_refused"),
        (404, {"errcode": "M_UNRECOGNIZED"}, State.NOT_CHECKED, "hscheck.hint.admin_api_status"),
        (502, None, State.NOT_CHECKED, "hscheck.hint.admin_api_status"),
        (200, "<html>", State.NOT_CHECKED, "hscheck.hint.admin_api_status"),
    ],
)
def test_classify_the_admin_answer(
    status: int, body: Any, state: State, problem: str | None
) -> None:
    f = classify(status, body, TARGET)
    assert (f.id, f.severity, f.state, f.problem) == (
        "enforcer_admin",
        Severity.CRITICAL,
        state,
        problem,
    )
    if problem in ("hscheck.hint.enforcer_not_admin", "hscheck.hint.enforcer_unregistered"):
        assert f.fix == "hscheck.fix.enforcer_admin"
        assert f.fix_params["url"] == (
            "https://matrix.example/_synapse/admin/v1/users/@santeguard_control:example/admin"
        )
    assert "as-secret-token-value" not in repr(f) + repr(TARGET)


def test_admin_path_quotes_the_user_id() -> None:
    assert admin_path("@a/b:ex") == "/_synapse/admin/v1/users/@a%2Fb:ex/admin"
