"""Encrypted attachments (spec ``EncryptedFile`` v2): round trip, tampering, nio interop."""

from __future__ import annotations

import base64
import copy
import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nio.crypto import attachments as nio_attachments

from bridge.e2ee.attachments import AttachmentError, decrypt_attachment, encrypt_attachment

DATA = b"%PDF-1.7 compte rendu\n" + bytes(range(256)) * 40


def _unb64(text: str) -> bytes:
    normal = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(normal + "=" * (-len(normal) % 4))


def test_round_trip_and_spec_shape() -> None:
    ciphertext, info = encrypt_attachment(DATA)
    assert ciphertext != DATA and len(ciphertext) == len(DATA)
    assert decrypt_attachment(ciphertext, info) == DATA
    assert set(info) == {"v", "key", "iv", "hashes"}  # the caller adds "url"
    assert info["v"] == "v2"
    key = info["key"]
    assert key["kty"] == "oct" and key["alg"] == "A256CTR" and key["ext"] is True
    assert set(key["key_ops"]) >= {"encrypt", "decrypt"}
    assert "=" not in key["k"] and "+" not in key["k"] and "/" not in key["k"]  # URL-safe
    assert len(_unb64(key["k"])) == 32
    iv = _unb64(info["iv"])
    assert len(iv) == 16 and iv[8:] == b"\x00" * 8
    assert "=" not in info["iv"] and "=" not in info["hashes"]["sha256"]
    assert _unb64(info["hashes"]["sha256"]) == hashlib.sha256(ciphertext).digest()


def test_fresh_key_and_iv_every_time() -> None:
    (c1, i1), (c2, i2) = encrypt_attachment(DATA), encrypt_attachment(DATA)
    assert c1 != c2 and i1["key"]["k"] != i2["key"]["k"] and i1["iv"] != i2["iv"]


def test_empty_file() -> None:
    ciphertext, info = encrypt_attachment(b"")
    assert ciphertext == b"" and decrypt_attachment(b"", info) == b""


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=5000))
def test_round_trip_any_bytes(data: bytes) -> None:
    ciphertext, info = encrypt_attachment(data)
    assert decrypt_attachment(ciphertext, info) == data


def test_flipped_byte_is_a_hash_mismatch() -> None:
    ciphertext, info = encrypt_attachment(DATA)
    for position in (0, len(ciphertext) // 2, len(ciphertext) - 1):
        tampered = bytearray(ciphertext)
        tampered[position] ^= 0x01
        with pytest.raises(AttachmentError) as e:
            decrypt_attachment(bytes(tampered), info)
        assert e.value.reason == "hash_mismatch"


def test_truncated_or_extended_ciphertext_is_refused() -> None:
    ciphertext, info = encrypt_attachment(DATA)
    for wrong in (ciphertext[:-1], ciphertext + b"\x00", b""):
        with pytest.raises(AttachmentError) as e:
            decrypt_attachment(wrong, info)
        assert e.value.reason == "hash_mismatch"


def _broken(info: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(info)
    target = out
    for part in path[:-1]:
        target = target[part]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (("v",), "v1", "unsupported_version"),
        (("v",), KeyError, "unsupported_version"),
        (("v",), 2, "unsupported_version"),
        (("key",), KeyError, "bad_key"),
        (("key",), "not an object", "bad_key"),
        (("key", "alg"), "A128CTR", "bad_key"),
        (("key", "kty"), "RSA", "bad_key"),
        (("key", "ext"), False, "bad_key"),
        (("key", "key_ops"), ["decrypt"], "bad_key"),
        (("key", "key_ops"), "encrypt,decrypt", "bad_key"),
        (("key", "k"), "AAAA", "bad_key"),  # 3 bytes
        (("key", "k"), "not base64!", "bad_key"),
        (("key", "k"), None, "bad_key"),
        (("iv",), "AAAAAAAAAAA", "bad_iv"),  # 8 bytes
        (("iv",), KeyError, "bad_iv"),
        (("iv",), "***", "bad_iv"),
        (("hashes",), KeyError, "bad_hash"),
        (("hashes",), {"sha1": "AAAA"}, "bad_hash"),
        (("hashes", "sha256"), "AAAA", "bad_hash"),
    ],
)
def test_invalid_file_info(path: tuple[str, ...], value: Any, reason: str) -> None:
    ciphertext, info = encrypt_attachment(DATA)
    with pytest.raises(AttachmentError) as e:
        decrypt_attachment(ciphertext, _broken(info, path, value))
    assert e.value.reason == reason
    assert info["key"]["k"] not in str(e.value)


def test_wrong_key_with_matching_hash_gives_other_bytes_not_an_error() -> None:
    # The hash covers the ciphertext only: a key from another file "decrypts" to noise.
    # This is why the file object must only ever come from an authenticated event.
    ciphertext, info = encrypt_attachment(DATA)
    _, other = encrypt_attachment(DATA)
    mixed = _broken(info, ("key", "k"), other["key"]["k"])
    assert decrypt_attachment(ciphertext, mixed) != DATA


def test_padded_and_standard_base64_are_accepted() -> None:
    ciphertext, info = encrypt_attachment(DATA)
    key = _unb64(info["key"]["k"])
    padded = copy.deepcopy(info)
    padded["key"]["k"] = base64.b64encode(key).decode()  # standard alphabet, padded
    padded["iv"] = base64.b64encode(_unb64(info["iv"])).decode()
    padded["hashes"]["sha256"] = base64.b64encode(hashlib.sha256(ciphertext).digest()).decode()
    assert decrypt_attachment(ciphertext, padded) == DATA


def test_nio_decrypts_ours() -> None:
    ciphertext, info = encrypt_attachment(DATA)
    clear = nio_attachments.decrypt_attachment(
        ciphertext, info["key"]["k"], info["hashes"]["sha256"], info["iv"]
    )
    assert clear == DATA


def test_we_decrypt_nios() -> None:
    ciphertext, info = nio_attachments.encrypt_attachment(DATA)
    assert decrypt_attachment(ciphertext, info) == DATA
    tampered = bytes([ciphertext[0] ^ 0x80]) + ciphertext[1:]
    with pytest.raises(AttachmentError) as e:
        decrypt_attachment(tampered, info)
    assert e.value.reason == "hash_mismatch"


def test_64_bit_counter_wraps_like_webcrypto() -> None:
    # An IV from another client whose low half is about to wrap: the counter must wrap
    # within its 64 bits (WebCrypto length 64), not carry into the random half.
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key, prefix = bytes(range(32)), b"\x11" * 8
    iv = prefix + (2**64 - 2).to_bytes(8, "big")
    clear = bytes(range(80))  # 5 blocks: counters ...fe, ...ff, then 0, 1, 2
    blocks = []
    for i in range(5):
        counter = prefix + ((2**64 - 2 + i) % 2**64).to_bytes(8, "big")
        enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305
        blocks.append(enc.update(counter) + enc.finalize())
    stream = b"".join(blocks)
    ciphertext = bytes(a ^ b for a, b in zip(clear, stream, strict=True))
    info = {
        "v": "v2",
        "key": {
            "kty": "oct",
            "alg": "A256CTR",
            "ext": True,
            "k": base64.urlsafe_b64encode(key).decode().rstrip("="),
            "key_ops": ["encrypt", "decrypt"],
        },
        "iv": base64.b64encode(iv).decode().rstrip("="),
        "hashes": {"sha256": base64.b64encode(hashlib.sha256(ciphertext).digest()).decode()},
    }
    assert decrypt_attachment(ciphertext, info) == clear
