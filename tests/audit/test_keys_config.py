"""The ``audit:`` section and the signing key: six months at least, a seed that decodes,
a generated key file kept 0600 and reused, and no key value in any error."""

from __future__ import annotations

import base64
import logging
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from bridge.audit.config import AuditConfig
from bridge.audit.keys import (
    AuditKeyError,
    load_signing_key,
    public_key_text,
    trusted_public_keys,
)
from bridge.audit.seal import key_id

SEED = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize(("days", "ok"), [(182, False), (183, True), (365, True), (0, False)])
def test_keep_days_at_least_six_months(days: int, ok: bool) -> None:
    if ok:
        assert AuditConfig(keep_days=days).keep_days == days
    else:
        with pytest.raises(ValidationError, match="at least 183 days"):
            AuditConfig(keep_days=days)


@pytest.mark.parametrize("bad", ["not base64!!", base64.b64encode(b"short").decode()])
def test_a_bad_seed_is_refused_without_showing_it(bad: str) -> None:
    with pytest.raises(ValidationError) as e:
        AuditConfig(signing_key=bad)
    assert all(bad not in err["msg"] for err in e.value.errors())  # what check-config shows
    with pytest.raises(ValidationError, match="extra"):
        AuditConfig(unknown=1)  # type: ignore[call-arg]


def test_configured_seed_is_the_key_and_a_secret() -> None:
    cfg = AuditConfig(signing_key=SEED)
    assert SEED not in repr(cfg)
    assert [s.get_secret_value() for s in cfg.secret_values() if s] == [SEED]
    key = load_signing_key(cfg, create=False)
    assert key_id(key) == key_id(load_signing_key(cfg, create=True))


def test_key_file_generated_once_0600_and_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = AuditConfig(key_file=str(tmp_path / "keys" / "audit.key"))
    with pytest.raises(AuditKeyError, match="does not exist"):
        load_signing_key(cfg, create=False)  # verify never makes a key
    caplog.set_level(logging.DEBUG, "santeguard.audit")
    key = load_signing_key(cfg, create=True)
    path = Path(cfg.key_file)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key_id(load_signing_key(cfg, create=True)) == key_id(key)
    seed = path.read_text().strip()
    assert seed not in caplog.text and key_id(key) in caplog.text
    # A previous key listed as trusted keeps its checkpoints verifiable.
    old = load_signing_key(AuditConfig(signing_key=SEED), create=False)
    with_old = cfg.model_copy(update={"previous_public_keys": [public_key_text(old)]})
    assert [key_id(k) for k in trusted_public_keys(with_old)] == [key_id(key), key_id(old)]


def test_unreadable_or_loose_key_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "audit.key"
    path.write_text("garbage\n")
    with pytest.raises(AuditKeyError, match="does not hold") as e:
        load_signing_key(AuditConfig(key_file=str(path)), create=True)
    assert "garbage" not in str(e.value)
    path.write_text(SEED + "\n")
    path.chmod(0o644)
    load_signing_key(AuditConfig(key_file=str(path)), create=False)
    assert "chmod 600" in caplog.text and SEED not in caplog.text
