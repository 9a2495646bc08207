"""A finding of `santeguard check-homeserver`, and the command's exit status.

A finding never claims more than was checked: it is ``ok`` (checked and right), ``fix``
(checked and wrong: ``problem`` says what, ``fix`` how, ``fix_yaml`` the homeserver.yaml
block to add) or ``not_checked`` (something needed was not given or not reachable;
``problem`` says what). Texts are ``hscheck.*`` catalog keys with their parameters, so
one finding renders in French or English.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

import yaml

from bridge.retention.policy import RetentionBounds


class State(Enum):
    OK = "ok"
    FIX = "fix"
    NOT_CHECKED = "not_checked"


class Severity(Enum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


# Exit status of the command (see the package docstring).
EXIT_OK = 0
EXIT_CRITICAL = 1
EXIT_UNREADABLE = 2
EXIT_NOT_CHECKED = 3
EXIT_WARNING = 4


@dataclass(frozen=True)
class Finding:
    id: str
    severity: Severity
    state: State
    problem: str | None = None  # hscheck.hint.*: what is wrong, or why it was not checked
    params: Mapping[str, str] = field(default_factory=dict)
    fix: str | None = None  # hscheck.fix.*: what to do (prose; may name fix_yaml)
    fix_params: Mapping[str, str] = field(default_factory=dict)
    fix_yaml: str | None = None  # the homeserver.yaml block to add or change

    @property
    def key(self) -> str:
        """The check's id (the name earlier versions used)."""
        return self.id

    @property
    def ok(self) -> bool:
        return self.state is State.OK


def ok(id: str, severity: Severity = Severity.CRITICAL) -> Finding:
    return Finding(id, severity, State.OK)


def not_checked(id: str, severity: Severity, problem: str, **params: str) -> Finding:
    return Finding(id, severity, State.NOT_CHECKED, problem, params)


def to_fix(
    id: str,
    severity: Severity,
    problem: str | None,
    *,
    params: Mapping[str, str] | None = None,
    fix: str | None = None,
    fix_params: Mapping[str, str] | None = None,
    fix_yaml: str | None = None,
) -> Finding:
    return Finding(
        id,
        severity,
        State.FIX,
        problem,
        dict(params or {}),
        fix,
        dict(fix_params or {}),
        fix_yaml,
    )


def exit_code(findings: Sequence[Finding]) -> int:
    """1: a critical finding to fix; 4: only warnings to fix; 3: nothing to fix but
    something not checked; 0: everything checked and right. Info findings to fix do not
    change the status."""
    to_fix_now = [f for f in findings if f.state is State.FIX]
    if any(f.severity is Severity.CRITICAL for f in to_fix_now):
        return EXIT_CRITICAL
    if any(f.severity is Severity.WARNING for f in to_fix_now):
        return EXIT_WARNING
    if any(f.state is State.NOT_CHECKED for f in findings):
        return EXIT_NOT_CHECKED
    return EXIT_OK


def yaml_block(mapping: Mapping[str, object]) -> str:
    """A homeserver.yaml fragment, keys in the order given."""
    return str(yaml.safe_dump(dict(mapping), sort_keys=False, allow_unicode=True)).rstrip("\n")


def as_dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def synapse_duration(value: object) -> int | None:
    """A homeserver.yaml duration in ms, read as Synapse reads it (``Config.parse_duration``:
    an int is ms; a string has no suffix (ms) or one of s, m, h, d, w, y); None if Synapse
    would refuse it."""
    if type(value) is int:
        return value
    if not isinstance(value, str) or not value:
        return None
    sizes = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    sizes |= {"w": 7 * sizes["d"], "y": 365 * sizes["d"]}
    number, size = (value[:-1], sizes[value[-1]]) if value[-1] in sizes else (value, 1)
    return int(number) * size if number.isdigit() else None


def duration_text(ms: int) -> str:
    """The shortest exact Synapse duration for ``ms`` (``15552000000`` → ``180d``)."""
    for suffix, size in (
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ):
        if ms % size == 0:
            return f"{ms // size}{suffix}"
    return str(ms)


def days_text(ms: int) -> str:
    return f"{ms / 86_400_000:g}"


@dataclass(frozen=True)
class Network:
    """What SantéGuard's config.yaml (``-c``) asks of the homeserver."""

    server_name: str
    bounds: RetentionBounds
    purge_interval_ms: int
    allowed_servers: frozenset[str]
    psc_idp_id: str | None = None
    antispam_url: str = "http://127.0.0.1:29340/_santeguard/antispam"
    enforcer: str = ""
