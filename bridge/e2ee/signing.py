"""Ed25519 signing of JSON objects as the Matrix spec defines it (appendix "Signing JSON").

matrix-nio has no cross-signing, so the bot signs its cross-signing keys and its device
itself: canonical JSON of the object without ``signatures`` and ``unsigned``, signed with
Ed25519, signature in unpadded base64 under ``signatures[user_id]["ed25519:<key id>"]``.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def unpadded_b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def unpadded_b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8 (integers only, as the spec requires)."""
    return json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
    ).encode("utf-8")


class SigningKey:
    """One Ed25519 key pair; the key ID is the unpadded base64 public key (cross-signing)."""

    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = unpadded_b64encode(self._key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def from_b64(cls, seed_b64: str) -> SigningKey:
        return cls(unpadded_b64decode(seed_b64))

    def seed_b64(self) -> str:
        return unpadded_b64encode(self._key.private_bytes_raw())

    def __repr__(self) -> str:  # never print the seed
        return f"<SigningKey {self.public_key}>"

    def sign(self, message: bytes) -> str:
        return unpadded_b64encode(self._key.sign(message))

    def sign_json(self, obj: dict[str, Any], user_id: str) -> dict[str, Any]:
        """A copy of ``obj`` with this key's signature added to its existing ones."""
        return sign_json(obj, user_id, self.public_key, self.sign)


def signable(obj: dict[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in obj.items() if k not in ("signatures", "unsigned")})


def sign_json(
    obj: dict[str, Any], user_id: str, key_id: str, sign: Callable[[bytes], str]
) -> dict[str, Any]:
    """Add ``sign(canonical bytes)`` as ``signatures[user_id]["ed25519:" + key_id]``."""
    signature = sign(signable(obj))
    out = copy.deepcopy(obj)
    out.setdefault("signatures", {}).setdefault(user_id, {})[f"ed25519:{key_id}"] = signature
    return out


def verify_json(obj: dict[str, Any], user_id: str, public_key_b64: str) -> bool:
    """Whether ``obj`` carries a valid signature of ``user_id`` by that Ed25519 key."""
    sig = obj.get("signatures", {}).get(user_id, {}).get(f"ed25519:{public_key_b64}")
    if not isinstance(sig, str):
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(unpadded_b64decode(public_key_b64))
        key.verify(unpadded_b64decode(sig), signable(obj))
    except (InvalidSignature, ValueError):
        return False
    return True
