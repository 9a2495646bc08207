"""Sizes, hypothesis settings and the example tally shared by the hostile-input tests.

Short mode (``make test``): a few hundred derandomized examples per target, so CI sees
the same inputs every run. Long mode (``SANTEGUARD_LONG_TESTS=1``, ``make reliability``):
``LONG_FACTOR`` times as many, randomized, to find what the fixed seed does not reach.
Every test counts the examples it really ran (``Tally``); tests/hostile/conftest.py
writes the counts to ``<basetemp>/hostile-counts.json`` and prints one summary line.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

LONG = os.environ.get("SANTEGUARD_LONG_TESTS") == "1"
LONG_FACTOR = 50
MODE = "long" if LONG else "short"

T = TypeVar("T")

# Inputs are built from strategies of large values on purpose; the tally is a fixture
# shared by every example of one test.
_SUPPRESSED = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
    HealthCheck.function_scoped_fixture,
]


# One hypothesis profile per mode, registered (not loaded: the rest of the suite keeps
# its own settings) and used as the parent of every hostile test's settings.
PROFILES = {"short": "santeguard-hostile-short", "long": "santeguard-hostile-long"}
settings.register_profile(
    PROFILES["short"],
    derandomize=True,  # CI sees the same inputs every run
    database=None,
    deadline=None,
    suppress_health_check=_SUPPRESSED,
)
settings.register_profile(
    PROFILES["long"],
    derandomize=False,  # new inputs every reliability run
    database=None,
    deadline=None,
    suppress_health_check=_SUPPRESSED,
    print_blob=True,  # a failure prints the blob that reproduces it
)


def budget(examples: int) -> settings:
    """Hypothesis settings for ``examples`` inputs (times ``LONG_FACTOR`` in long mode)."""
    return settings(
        settings.get_profile(PROFILES[MODE]),
        max_examples=examples * LONG_FACTOR if LONG else examples,
    )


@dataclass
class Tally:
    """What one test ran: inputs tried, by outcome, and the worst memory per input byte.

    ``peak_bytes`` is the largest tracemalloc peak of one input; ``worst_ratio`` the
    largest peak / input size over inputs of 1 KiB or more (the bound itself is
    ``allowance + per_byte * size``).
    """

    target: str
    examples: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    peak_bytes: int = 0
    largest_input: int = 0
    worst_ratio: float = 0.0
    seconds: float = 0.0
    _started: float = field(default_factory=time.perf_counter, repr=False)

    def count(self, outcome: str, n: int = 1) -> None:
        self.examples += n
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n

    def finish(self) -> None:
        self.seconds = round(time.perf_counter() - self._started, 3)

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "mode": MODE,
            "examples": self.examples,
            "outcomes": dict(sorted(self.outcomes.items())),
            "seconds": self.seconds,
            "peak_bytes": self.peak_bytes,
            "largest_input_bytes": self.largest_input,
            "worst_bytes_per_input_byte": round(self.worst_ratio, 2),
        }

    @contextmanager
    def memory(self, input_size: int, *, allowance: int, per_byte: int) -> Iterator[None]:
        """Fails unless the block's allocation peak stays under ``allowance`` plus
        ``per_byte`` times the input size: memory grows at most linearly with the input."""
        if tracemalloc.is_tracing():
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            own = False
        else:
            tracemalloc.start()
            base, own = 0, True
        try:
            yield
        finally:
            # Checked whether the block returned or raised its documented exception.
            peak = tracemalloc.get_traced_memory()[1] - base
            if own:
                tracemalloc.stop()
            self.peak_bytes = max(self.peak_bytes, peak)
            self.largest_input = max(self.largest_input, input_size)
            if input_size >= 1024:  # below, the fixed allowance dominates any ratio
                self.worst_ratio = max(self.worst_ratio, peak / input_size)
            limit = allowance + per_byte * input_size
            assert peak <= limit, f"{peak} bytes allocated for {input_size} input bytes (> {limit})"


def bounded(tally: Tally, size: int, fn: Callable[[], T], *, allowance: int, per_byte: int) -> T:
    """``fn()`` under ``tally.memory``: the value, or the exception it raised."""
    with tally.memory(size, allowance=allowance, per_byte=per_byte):
        return fn()


MiB = 2**20
