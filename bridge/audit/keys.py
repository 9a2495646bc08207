"""The checkpoint signing key: from the configuration, or a key file generated once.

The key file holds the 32-byte Ed25519 seed in base64 on one line, mode 0600. It is
created on first start (never overwritten) and kept with the other secrets; losing it
only means later checkpoints are signed by a new key (list the old public key in
``audit.previous_public_keys`` so earlier checkpoints still verify). The key's value is
never logged nor shown in an error.
"""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from bridge.audit.config import AuditConfig, decode_seed
from bridge.audit.seal import key_id, public_key_bytes, public_key_from_b64

log = logging.getLogger("santeguard.audit")


class AuditKeyError(Exception):
    """The signing key cannot be read or made; the message names the file, not the key."""


def load_signing_key(cfg: AuditConfig, *, create: bool) -> Ed25519PrivateKey:
    """The configured key, else the key file's; generated when absent and ``create``.

    ``cfg.key_file`` is used as given: ``bridge.config.load_config`` has made it absolute
    (relative to the config file)."""
    if cfg.signing_key is not None:
        return Ed25519PrivateKey.from_private_bytes(decode_seed(cfg.signing_key.get_secret_value()))
    path = Path(cfg.key_file)
    if not path.exists():
        if not create:
            raise AuditKeyError(f"audit.key_file: {path} does not exist")
        return _generate(path)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as e:
        raise AuditKeyError(f"audit.key_file: cannot read {path}: {type(e).__name__}") from None
    try:
        key = Ed25519PrivateKey.from_private_bytes(decode_seed(text))
    except ValueError:
        raise AuditKeyError(
            f"audit.key_file: {path} does not hold a base64 32-byte Ed25519 seed"
        ) from None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "The audit signing key file %s is readable by others (mode %o): chmod 600 it",
            path,
            mode,
        )
    return key


def _generate(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return Ed25519PrivateKey.from_private_bytes(decode_seed(path.read_text("ascii")))
    except OSError as e:
        raise AuditKeyError(f"audit.key_file: cannot create {path}: {e.strerror}") from None
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(base64.b64encode(seed).decode("ascii") + "\n")
        f.flush()
        os.fsync(f.fileno())
    log.info("Generated the audit signing key %s (key ID %s)", path, key_id(key))
    return key


def trusted_public_keys(cfg: AuditConfig) -> list[Ed25519PublicKey]:
    """The keys whose checkpoints ``verify`` accepts: the current one (never generated
    here) and the configured previous ones."""
    keys = [load_signing_key(cfg, create=False).public_key()]
    keys.extend(public_key_from_b64(k) for k in cfg.previous_public_keys)
    return keys


def public_key_text(key: Ed25519PrivateKey) -> str:
    """The public half in base64, as ``previous_public_keys`` takes it."""
    return base64.b64encode(public_key_bytes(key)).decode("ascii")
