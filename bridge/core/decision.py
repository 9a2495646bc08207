"""A decision of a pure rule: allowed, or refused with a text-catalog reason and its values.

Rules return these instead of sentences so that the same decision can be rendered in the
reader's language (or in both, where the homeserver shows it as is).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Decision:
    allow: bool
    reason: str = ""  # a text-catalog key suffix, e.g. "not_verified"
    params: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def ok(cls) -> Decision:
        return cls(True)

    @classmethod
    def no(cls, reason: str, **params: str) -> Decision:
        return cls(False, reason, params)
