"""The ``retention:`` section: the network's declared retention and inactive-room rule."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge.retention.policy import DurationError, RetentionBounds, parse_duration


def _duration(value: str) -> str:
    try:
        parse_duration(value)
    except DurationError as e:
        raise ValueError(
            f"{value!r} is not a duration ({e.reason}); write e.g. 90d, 6mo, 1y"
        ) from None
    return value


class RetentionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True,
        description="Give every protected room an m.room.retention within the bounds, "
        "refuse out-of-bounds ones, audit that expired history is gone.",
    )
    default_max_lifetime: str = Field(
        "180d", description="Lifetime a room gets when it has no policy."
    )
    min_lifetime: str = Field("1d", description="Shortest lifetime a room may declare.")
    max_lifetime: str = Field("365d", description="Longest lifetime a room may declare.")
    purge_interval: str = Field(
        "1d",
        description="The homeserver's purge job interval (retention.purge_jobs): an "
        "expired event may live this much longer before the audit calls it a violation.",
    )
    inactive_after: str = Field(
        "180d", description="A room with no activity this long is closed and purged."
    )
    inactive_notice: str = Field(
        "14d", description="Members of an inactive room are told this long before closure."
    )
    inactive_check_minutes: float = Field(
        60, gt=0, description="Period of the inactive-room check."
    )
    audit_hours: float = Field(24, gt=0, description="Period of the purge-proof audit.")

    @field_validator(
        "default_max_lifetime",
        "min_lifetime",
        "max_lifetime",
        "purge_interval",
        "inactive_after",
        "inactive_notice",
    )
    @classmethod
    def _readable(cls, v: str) -> str:
        return _duration(v)

    @model_validator(mode="after")
    def _ordered(self) -> RetentionConfig:
        try:
            _ = self.bounds
        except ValueError:
            raise ValueError(
                "retention: min_lifetime <= default_max_lifetime <= max_lifetime must hold"
            ) from None
        return self

    @property
    def bounds(self) -> RetentionBounds:
        return RetentionBounds(
            default_max_ms=parse_duration(self.default_max_lifetime),
            min_ms=parse_duration(self.min_lifetime),
            max_ms=parse_duration(self.max_lifetime),
        )

    @property
    def purge_interval_ms(self) -> int:
        return parse_duration(self.purge_interval)

    @property
    def inactive_after_ms(self) -> int:
        return parse_duration(self.inactive_after)

    @property
    def inactive_notice_ms(self) -> int:
        return parse_duration(self.inactive_notice)
