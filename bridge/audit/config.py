"""The ``audit:`` configuration section: the audit log's seal and its retention.

Relative paths (``key_file``, ``checkpoint_file``) are relative to the config file, like
every other path in the configuration (``bridge.config.load_config`` resolves them).
"""

from __future__ import annotations

import base64
import binascii

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

MIN_KEEP_DAYS = 183
"""CNIL guidance: access logs are kept at least six months."""


def decode_seed(text: str) -> bytes:
    """The 32-byte Ed25519 seed from its base64 text; ``ValueError`` (never showing the
    value) otherwise."""
    try:
        seed = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64") from None
    if len(seed) != 32:
        raise ValueError("must be a base64-encoded 32-byte Ed25519 seed")
    return seed


class AuditConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signing_key: SecretStr | None = Field(
        None,
        description="Ed25519 seed (32 bytes, base64) that signs the checkpoints. Unset: the "
        "key is read from key_file, which is generated on first start.",
    )
    key_file: str = Field(
        "santeguard-audit.key",
        description="Where the generated signing key is kept (mode 0600, with the other "
        "secrets) when signing_key is unset. Relative to the config file.",
    )
    previous_public_keys: list[str] = Field(
        default_factory=list,
        description="Public keys (base64) of earlier signing keys: checkpoints they signed "
        "still verify after the key is changed.",
    )
    checkpoint_file: str = Field(
        "santeguard-audit-checkpoints.jsonl",
        description="Append-only file of signed checkpoints (one JSON object a line), kept "
        "where the database's owner cannot rewrite it. Relative to the config file.",
    )
    checkpoint_minutes: float = Field(
        60,
        gt=0,
        description="How often the log's head is signed (only when it changed); one is "
        "also made at start and at shutdown. Rows deleted after the last checkpoint cannot "
        "be detected, so this bounds what can be cut unnoticed.",
    )
    keep_days: int = Field(
        365,
        description="Entries older than this are pruned (the log stays verifiable). At "
        f"least {MIN_KEEP_DAYS} days (six months, CNIL guidance).",
    )

    @field_validator("keep_days")
    @classmethod
    def _six_months_at_least(cls, v: int) -> int:
        if v < MIN_KEEP_DAYS:
            raise ValueError(
                f"must be at least {MIN_KEEP_DAYS} days: the CNIL expects access logs to be "
                "kept six months or more"
            )
        return v

    @field_validator("signing_key")
    @classmethod
    def _seed(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            decode_seed(v.get_secret_value())
        return v

    @field_validator("previous_public_keys")
    @classmethod
    def _public_keys(cls, v: list[str]) -> list[str]:
        for i, key in enumerate(v):
            try:
                decode_seed(key)
            except ValueError:
                raise ValueError(
                    f"entry {i} must be a base64-encoded 32-byte Ed25519 public key"
                ) from None
        return v

    def secret_values(self) -> list[SecretStr | None]:
        return [self.signing_key]
