"""The device's store as one encrypted blob: the pure half of ``dbstore``.

The store directory's files (``device.json``, ``cross_signing.json``,
``undecryptable.json`` and nio's SQLite store: every non-hidden ``*.json`` and ``*.db``)
become a deflated tar, the SQLite ones copied with the backup API (a consistent image, not
the raw file), sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the
appservice's ``as_token``: a database dump alone does not give the device's keys. The
blob names its key (an 8-byte key ID from the same derivation), so another ``as_token``
is told apart from a corrupted blob.
"""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import tarfile
import zlib
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bridge.e2ee.errors import CryptoError
from bridge.e2ee.files import write_private

MAGIC = b"SGE2EE1\n"  # blob format 1: MAGIC, key ID (8), nonce (12), AES-GCM ciphertext
_KEY_ID_LEN, _NONCE_LEN = 8, 12
_SQLITE_HEADER = b"SQLite format 3\x00"
_STORE_SUFFIXES = (".json", ".db")
_SIDE_SUFFIXES = (".db-journal", ".db-wal", ".db-shm", ".tmp")  # removed on restore only
_SINCE_ROWS = 'INSERT INTO "synctokens"'  # nio's since token: not crypto state

Files = tuple[tuple[str, bytes], ...]  # (file name, content), sorted by name


class StoreError(CryptoError):
    """The stored device cannot be used: the device must not start (never a new one)."""


def _is_store_file(name: str) -> bool:
    return not name.startswith(".") and name.endswith(_STORE_SUFFIXES)


def snapshot(store: Path) -> Files:
    """The store's files as of now; SQLite databases through the backup API."""
    files = []
    for path in sorted(store.iterdir()):
        if path.is_file() and _is_store_file(path.name):
            with path.open("rb") as handle:
                is_sqlite = handle.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER
            files.append((path.name, _sqlite_image(path) if is_sqlite else path.read_bytes()))
    return tuple(files)


def _sqlite_image(path: Path) -> bytes:
    # Read-write (never created): opening may have to roll back a crash's hot journal.
    src = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True)
    dst = sqlite3.connect(":memory:")
    try:
        src.backup(dst)
        return dst.serialize()
    finally:
        dst.close()
        src.close()


def digests(files: Files) -> tuple[bytes, bytes]:
    """(state, full): ``state`` leaves nio's sync token out, ``full`` covers every byte."""
    state, full = hashlib.sha256(), hashlib.sha256()
    for name, data in files:
        for h in (state, full):
            h.update(b"%d:%s\0" % (len(name), name.encode()))
        full.update(hashlib.sha256(data).digest())
        if not data.startswith(_SQLITE_HEADER):
            state.update(hashlib.sha256(data).digest())
            continue
        conn = sqlite3.connect(":memory:")
        try:
            conn.deserialize(data)
            for line in conn.iterdump():
                if not line.startswith(_SINCE_ROWS):
                    state.update(line.encode() + b"\0")
        finally:
            conn.close()
    return state.digest(), full.digest()


def pack(files: Files) -> bytes:
    """A tar of the files, deflated Huffman-only: the pickles are base64 of ciphertext,
    which string matching does not shrink; entropy coding alone is three times faster."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, 0
            tar.addfile(info, io.BytesIO(data))
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_HUFFMAN_ONLY)
    return deflate.compress(out.getvalue()) + deflate.flush()


def unpack(archive: bytes) -> Files:
    """The archive's files; anything but plain store files at the top level is refused."""
    files = []
    try:
        with tarfile.open(fileobj=io.BytesIO(zlib.decompress(archive)), mode="r:") as tar:
            for member in tar.getmembers():
                if not (member.isfile() and "/" not in member.name and _is_store_file(member.name)):
                    raise StoreError(f"the stored device has an unexpected entry {member.name!r}")
                handle = tar.extractfile(member)
                assert handle is not None
                files.append((member.name, handle.read()))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise StoreError(f"the stored device is not a valid archive: {e}") from e
    return tuple(sorted(files))


def _derive(as_token: str) -> tuple[bytes, bytes]:
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=32 + _KEY_ID_LEN,
        salt=b"santeguard e2ee store",
        info=b"santeguard e2ee store v1: aes-256-gcm key, key id",
    ).derive(as_token.encode("utf-8"))
    return okm[:32], okm[32:]


def seal(archive: bytes, as_token: str) -> bytes:
    key, key_id = _derive(as_token)
    nonce = os.urandom(_NONCE_LEN)
    header = MAGIC + key_id
    return header + nonce + AESGCM(key).encrypt(nonce, archive, header)


def unseal(blob: bytes, as_token: str) -> bytes:
    """The archive; ``StoreError`` for another token, a corrupted or a foreign blob."""
    key, key_id = _derive(as_token)
    head = len(MAGIC) + _KEY_ID_LEN
    if not blob.startswith(MAGIC) or len(blob) < head + _NONCE_LEN + 16:
        raise StoreError("the stored device is not in a known format")
    if blob[len(MAGIC) : head] != key_id:
        raise StoreError(
            "cannot decrypt the stored device: the as_token changed (re-encrypt it with "
            "the previous as_token, see docs/e2ee.md); the device is not started"
        )
    try:
        return AESGCM(key).decrypt(
            blob[head : head + _NONCE_LEN], blob[head + _NONCE_LEN :], blob[:head]
        )
    except InvalidTag:
        raise StoreError("the stored device is corrupted (authentication failed)") from None


def replace_files(store: Path, files: Files) -> None:
    """Remove the store's files (not subdirectories, nor other files) and write ``files``."""
    for path in store.iterdir():
        if path.is_file() and (_is_store_file(path.name) or path.name.endswith(_SIDE_SUFFIXES)):
            path.unlink()
    for name, data in files:
        write_private(store / name, data)
