"""Retention as the homeserver runs it, read from homeserver.yaml's ``retention:``.

Facts from Synapse's sources (``synapse/config/retention.py``, ``handlers/pagination.py``):
``enabled`` defaults to false; with no ``purge_jobs`` Synapse runs one job a day over every
lifetime; a job purges the rooms whose own ``max_lifetime`` is in
``(shortest_max_lifetime, longest_max_lifetime]`` (rooms without a policy only when
``default_policy.max_lifetime`` is in that range), clamped to
``[allowed_lifetime_min, allowed_lifetime_max]`` when purging.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bridge.homeserver_check.model import (
    Finding,
    Network,
    Severity,
    as_dict,
    days_text,
    duration_text,
    not_checked,
    ok,
    synapse_duration,
    to_fix,
    yaml_block,
)
from bridge.retention.config import RetentionConfig

CRIT, WARN = Severity.CRITICAL, Severity.WARNING
DAY_MS = 86_400_000
NO_CONFIG = "hscheck.hint.needs_config"


def recommended(network: Network | None) -> dict[str, Any]:
    """The ``retention:`` block that matches the network (SantéGuard's defaults without -c)."""
    if network is not None:
        bounds, interval = network.bounds, network.purge_interval_ms
    else:
        default = RetentionConfig()
        bounds, interval = default.bounds, default.purge_interval_ms
    return {
        "retention": {
            "enabled": True,
            "default_policy": {"max_lifetime": duration_text(bounds.default_max_ms)},
            "allowed_lifetime_min": duration_text(bounds.min_ms),
            "allowed_lifetime_max": duration_text(bounds.max_ms),
            "purge_jobs": [{"interval": duration_text(interval)}],
        }
    }


def _part(network: Network | None, *keys: str) -> str:
    block = recommended(network)["retention"]
    return yaml_block({"retention": {k: block[k] for k in keys}})


def enabled(section: Mapping[str, Any], network: Network | None) -> Finding:
    if section.get("enabled") is True:
        return ok("retention")
    return to_fix(
        "retention",
        CRIT,
        "hscheck.hint.retention_disabled",
        fix_yaml=yaml_block(recommended(network)),
    )


Job = tuple[int, int | None, int | None]  # interval, shortest (exclusive), longest (inclusive)


def _jobs(section: Mapping[str, Any]) -> list[Job] | None:
    """Synapse's purge jobs (its default when none are listed); None if malformed."""
    raw = section.get("purge_jobs") or []
    if not isinstance(raw, list):
        return None
    jobs: list[Job] = []
    for entry in raw:
        if not isinstance(entry, dict) or synapse_duration(entry.get("interval")) is None:
            return None
        bounds = [entry.get("shortest_max_lifetime"), entry.get("longest_max_lifetime")]
        parsed = [None if b is None else synapse_duration(b) for b in bounds]
        if any(b is not None and p is None for b, p in zip(bounds, parsed, strict=True)):
            return None
        interval = synapse_duration(entry["interval"])
        assert interval is not None
        jobs.append((interval, parsed[0], parsed[1]))
    return jobs or [(DAY_MS, None, None)]


def first_gap(jobs: list[Job], low: int, high: float) -> tuple[float, float] | None:
    """The first lifetimes in ``[low, high]`` (ms) that no job purges, as ``(from, to)``."""
    ranges = [(float(s or 0), math.inf if e is None else float(e)) for _, s, e in jobs]
    need = float(low)  # the smallest lifetime not known to be purged
    moved = True
    while moved and need <= high:
        moved = False
        for start, end in ranges:
            if start < need <= end:  # a job purges (start, end]
                if end == math.inf:
                    return None
                need, moved = end + 1, True
    if need > high:
        return None
    return need, min([high, *(s for s, _ in ranges if s >= need)])


def _target(network: Network | None) -> tuple[int, float]:
    return (network.bounds.min_ms, network.bounds.max_ms) if network else (1, math.inf)


def purge_jobs(section: Mapping[str, Any], network: Network | None) -> Finding:
    jobs = _jobs(section)
    fix_yaml = _part(network, "purge_jobs")
    if jobs is None:
        return to_fix("purge_jobs", CRIT, "hscheck.hint.purge_jobs_malformed", fix_yaml=fix_yaml)
    gap = first_gap(jobs, *_target(network))
    if gap is None:
        return ok("purge_jobs")
    low, high = gap
    return to_fix(
        "purge_jobs",
        CRIT,
        "hscheck.hint.purge_jobs_gap",
        params={
            "low": days_text(int(low)),
            "high": "∞" if high == math.inf else days_text(int(high)),
        },
        fix_yaml=fix_yaml,
    )


def purge_interval(section: Mapping[str, Any], network: Network | None) -> Finding:
    jobs = _jobs(section)
    if network is None:
        return not_checked("purge_interval", WARN, NO_CONFIG)
    if jobs is None:
        return not_checked("purge_interval", WARN, "hscheck.hint.purge_jobs_malformed")
    low, high = _target(network)
    relevant = [i for i, s, e in jobs if (s or 0) < high and (e is None or e >= low)] or [
        i for i, _, _ in jobs
    ]
    slowest = max(relevant)
    if slowest <= network.purge_interval_ms:
        return ok("purge_interval", WARN)
    return to_fix(
        "purge_interval",
        WARN,
        "hscheck.hint.purge_interval",
        params={
            "interval": duration_text(slowest),
            "expected": duration_text(network.purge_interval_ms),
        },
        fix_yaml=_part(network, "purge_jobs"),
    )


def bounds(section: Mapping[str, Any], network: Network | None) -> Finding:
    """``allowed_lifetime_min/max`` against the network's bounds: Synapse clamps every
    room's ``max_lifetime`` into them when purging."""
    raw_min, raw_max = section.get("allowed_lifetime_min"), section.get("allowed_lifetime_max")
    low = None if raw_min is None else synapse_duration(raw_min)
    high = None if raw_max is None else synapse_duration(raw_max)
    fix_yaml = _part(network, "allowed_lifetime_min", "allowed_lifetime_max")
    if (raw_min is not None and low is None) or (raw_max is not None and high is None):
        return to_fix("retention_bounds", CRIT, "hscheck.hint.bounds_malformed", fix_yaml=fix_yaml)
    if network is None:
        if low is None or high is None:
            return to_fix("retention_bounds", WARN, "hscheck.hint.bounds_absent", fix_yaml=fix_yaml)
        return not_checked("retention_bounds", CRIT, NO_CONFIG)
    want_low, want_high = network.bounds.min_ms, network.bounds.max_ms
    params = {
        "min": "-" if low is None else days_text(low),
        "max": "-" if high is None else days_text(high),
        "net_min": days_text(want_low),
        "net_max": days_text(want_high),
    }
    if (low is not None and low > want_low) or (high is not None and high < want_high):
        return to_fix(
            "retention_bounds",
            CRIT,
            "hscheck.hint.bounds_narrower",
            params=params,
            fix_yaml=fix_yaml,
        )
    if low is None or high is None:
        return to_fix("retention_bounds", WARN, "hscheck.hint.bounds_absent", fix_yaml=fix_yaml)
    if (low, high) != (want_low, want_high):
        return to_fix(
            "retention_bounds",
            WARN,
            "hscheck.hint.bounds_wider",
            params=params,
            fix_yaml=fix_yaml,
        )
    return ok("retention_bounds")


def default_policy(section: Mapping[str, Any], network: Network | None) -> Finding:
    raw = as_dict(section.get("default_policy")).get("max_lifetime")
    value = None if raw is None else synapse_duration(raw)
    fix_yaml = _part(network, "default_policy")
    if value is None:
        return to_fix(
            "retention_default", WARN, "hscheck.hint.no_default_policy", fix_yaml=fix_yaml
        )
    if network is None:
        return not_checked("retention_default", WARN, NO_CONFIG)
    if value != network.bounds.default_max_ms:
        return to_fix(
            "retention_default",
            WARN,
            "hscheck.hint.default_policy_differs",
            params={
                "value": days_text(value),
                "expected": days_text(network.bounds.default_max_ms),
            },
            fix_yaml=fix_yaml,
        )
    return ok("retention_default", WARN)


def retention_checks(config: Mapping[str, Any], network: Network | None) -> list[Finding]:
    section = as_dict(config.get("retention"))
    return [
        enabled(section, network),
        purge_jobs(section, network),
        purge_interval(section, network),
        bounds(section, network),
        default_policy(section, network),
    ]
