"""Encrypted attachments as the Matrix spec defines them (``EncryptedFile``, ``v2``).

A file sent to an encrypted room is uploaded as ciphertext: AES-256-CTR under a fresh
random key, the key and IV travelling only inside the (Megolm-encrypted) event as the
``file`` object. The IV's low 64 bits (the block counter) start at zero so the counter
can never wrap into the random half. The SHA-256 of the ciphertext is checked before
anything is decrypted: a tampered or truncated download is refused, never half-read.

nio has helpers for this, but its decryption checks neither the version nor the key's
metadata; this uses ``cryptography`` directly and validates every field. Errors carry a
reason code only (``AttachmentError.reason``), never key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

VERSION = "v2"
_KEY_BYTES = 32
_IV_BYTES = 16
_B64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


class AttachmentError(Exception):
    """An encrypted attachment that cannot be opened safely.

    ``reason``: "unsupported_version", "bad_key", "bad_iv", "bad_hash" (missing or not a
    SHA-256), "hash_mismatch" (the ciphertext is not what the sender uploaded).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _b64encode(data: bytes, *, urlsafe: bool = False) -> str:
    """Unpadded base64, as Matrix writes it (``urlsafe`` for the JWK ``k``)."""
    encoded = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    return encoded.decode("ascii").rstrip("=")


def _b64decode(text: object) -> bytes | None:
    """Standard or URL-safe base64, padded or not; None if it is not base64 at all."""
    if not isinstance(text, str) or _B64.fullmatch(text) is None:
        return None
    normal = text.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(normal + "=" * (-len(normal) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _ctr(key: bytes, iv: bytes) -> Cipher[modes.CTR]:
    return Cipher(algorithms.AES(key), modes.CTR(iv))


def encrypt_attachment(data: bytes) -> tuple[bytes, dict[str, Any]]:
    """(ciphertext, ``file`` object without ``url``): upload the first, send the second."""
    key = os.urandom(_KEY_BYTES)
    iv = os.urandom(8) + b"\x00" * 8
    encryptor = _ctr(key, iv).encryptor()
    ciphertext = encryptor.update(data) + encryptor.finalize()
    info: dict[str, Any] = {
        "v": VERSION,
        "key": {
            "kty": "oct",
            "alg": "A256CTR",
            "ext": True,
            "k": _b64encode(key, urlsafe=True),
            "key_ops": ["encrypt", "decrypt"],
        },
        "iv": _b64encode(iv),
        "hashes": {"sha256": _b64encode(hashlib.sha256(ciphertext).digest())},
    }
    return ciphertext, info


def _key(file_info: Mapping[str, Any]) -> bytes:
    jwk = file_info.get("key")
    if not isinstance(jwk, Mapping):
        raise AttachmentError("bad_key")
    ops = jwk.get("key_ops")
    if (
        jwk.get("kty") != "oct"
        or jwk.get("alg") != "A256CTR"
        or jwk.get("ext") is not True
        or not isinstance(ops, list)
        or "decrypt" not in ops
        or "encrypt" not in ops
    ):
        raise AttachmentError("bad_key")
    key = _b64decode(jwk.get("k"))
    if key is None or len(key) != _KEY_BYTES:
        raise AttachmentError("bad_key")
    return key


def decrypt_attachment(ciphertext: bytes, file_info: Mapping[str, Any]) -> bytes:
    """The clear bytes of a downloaded attachment, once its SHA-256 matches ``file_info``.

    Raises ``AttachmentError``; nothing is decrypted unless every field is valid and the
    hash matches.
    """
    if file_info.get("v") != VERSION:
        raise AttachmentError("unsupported_version")
    key = _key(file_info)
    iv = _b64decode(file_info.get("iv"))
    if iv is None or len(iv) != _IV_BYTES:
        raise AttachmentError("bad_iv")
    hashes = file_info.get("hashes")
    expected = _b64decode(hashes.get("sha256")) if isinstance(hashes, Mapping) else None
    if expected is None or len(expected) != hashlib.sha256().digest_size:
        raise AttachmentError("bad_hash")
    if not hmac.compare_digest(hashlib.sha256(ciphertext).digest(), expected):
        raise AttachmentError("hash_mismatch")
    return _ctr64(key, iv, ciphertext)


def _ctr64(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-CTR with a 64-bit counter (WebCrypto ``length: 64``), as clients encrypt.

    ``cryptography`` counts over all 128 bits; the two differ only if the low half wraps,
    which an IV from another client (low half not zero) could in theory reach.
    """
    prefix, counter = iv[:8], int.from_bytes(iv[8:], "big")
    split = (2**64 - counter) * 16
    head, tail = data[:split], data[split:]
    decryptor = _ctr(key, iv).decryptor()
    out = decryptor.update(head) + decryptor.finalize()
    if tail:
        decryptor = _ctr(key, prefix + b"\x00" * 8).decryptor()
        out += decryptor.update(tail) + decryptor.finalize()
    return out
