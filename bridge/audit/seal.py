"""Signed checkpoints of the audit log's head, as pure functions.

A checkpoint says "the log's entry ``seq`` has hash ``head_hash``, it was appended at
``head_ts`` and is the ``count``-th entry since the first" and is signed with Ed25519.
Kept outside the database (a file, the admin room), it lets ``verify`` prove that no
entry up to ``seq`` was cut, even by someone who can rewrite the whole database.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

DOMAIN = b"santeguard-audit-checkpoint/1\n"
"""Prefix of every signed payload, so a checkpoint signature means nothing elsewhere."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int  # the last entry covered
    head_hash: str  # its hash
    head_ts: int  # its timestamp (ms)
    count: int  # entries from the first ever (pruned ones included) to seq
    ts: int  # when it was signed (ms)
    key_id: str
    public_key: str  # base64, informative: trust comes from the configured key
    signature: str  # base64

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """A short, stable name of a key: the first 16 hex digits of its public key's SHA-256."""
    return hashlib.sha256(public_key_bytes(key)).hexdigest()[:16]


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    """``ValueError`` if ``text`` is not a base64 32-byte public key."""
    raw = base64.b64decode(text.strip(), validate=True)
    return Ed25519PublicKey.from_public_bytes(raw)


def payload(seq: int, head_hash: str, head_ts: int, count: int, ts: int, kid: str) -> bytes:
    """The canonical bytes a checkpoint's signature covers."""
    body = {"count": count, "hash": head_hash, "head_ts": head_ts, "key": kid, "seq": seq, "ts": ts}
    return DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")


def sign(
    key: Ed25519PrivateKey, seq: int, head_hash: str, head_ts: int, count: int, ts: int
) -> Checkpoint:
    kid = key_id(key)
    signature = key.sign(payload(seq, head_hash, head_ts, count, ts, kid))
    return Checkpoint(
        seq=seq,
        head_hash=head_hash,
        head_ts=head_ts,
        count=count,
        ts=ts,
        key_id=kid,
        public_key=base64.b64encode(public_key_bytes(key)).decode("ascii"),
        signature=base64.b64encode(signature).decode("ascii"),
    )


def trusted_keys(keys: list[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    return {key_id(k): k for k in keys}


def signature_state(cp: Checkpoint, trusted: Mapping[str, Ed25519PublicKey]) -> str:
    """``"ok"``, ``"unknown_key"`` (signed by a key that is not trusted) or ``"forged"``."""
    public = trusted.get(cp.key_id)
    if public is None:
        return "unknown_key"
    try:
        signature = base64.b64decode(cp.signature, validate=True)
        signed = payload(cp.seq, cp.head_hash, cp.head_ts, cp.count, cp.ts, cp.key_id)
        public.verify(signature, signed)
    except (InvalidSignature, ValueError):
        return "forged"
    return "ok"


def to_line(cp: Checkpoint) -> str:
    """One line of the checkpoint file (no newline)."""
    return json.dumps(cp.to_json(), sort_keys=True, separators=(",", ":"))


def from_json(data: Any) -> Checkpoint:
    """A checkpoint from its JSON form; ``ValueError`` if it is not one."""
    if not isinstance(data, dict):
        raise ValueError("not an object")
    try:
        cp = Checkpoint(
            seq=data["seq"],
            head_hash=data["head_hash"],
            head_ts=data["head_ts"],
            count=data["count"],
            ts=data["ts"],
            key_id=data["key_id"],
            public_key=data["public_key"],
            signature=data["signature"],
        )
    except KeyError as e:
        raise ValueError(f"missing {e.args[0]}") from None
    ints = (cp.seq, cp.head_ts, cp.count, cp.ts)
    texts = (cp.head_hash, cp.key_id, cp.public_key, cp.signature)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
        raise ValueError("seq, head_ts, count and ts must be integers")
    if not all(isinstance(v, str) for v in texts):
        raise ValueError("hashes, key and signature must be strings")
    return cp


def from_line(line: str) -> Checkpoint:
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        raise ValueError("not JSON") from None
    return from_json(data)
