"""The stored device's blob: snapshot, digests, archive and encryption (no database)."""

from __future__ import annotations

import io
import sqlite3
import stat
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.e2ee.device.store_archive import (
    MAGIC,
    StoreError,
    digests,
    pack,
    replace_files,
    seal,
    snapshot,
    unpack,
    unseal,
)

TOKEN = "as-token-one"


def make_store(path: Path) -> Path:
    """A store like the device's: JSON files and an nio-like SQLite database."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "device.json").write_text('{"device_id": "DEV"}')
    (path / "cross_signing.json").write_text('{"master": "seed"}')
    with sqlite3.connect(path / "@bot:test_DEV.db") as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, account BLOB)")
        conn.execute("CREATE TABLE synctokens (account INTEGER PRIMARY KEY, token TEXT)")
        conn.execute("INSERT INTO accounts VALUES (1, x'0102')")
        conn.execute("INSERT INTO synctokens VALUES (1, 's1_token')")
    conn.close()
    return path


def rows(db: Path, table: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.execute(f"SELECT * FROM {table} ORDER BY 1"))
    finally:
        conn.close()


def test_roundtrip_restores_every_file_and_a_working_database(tmp_path: Path) -> None:
    files = snapshot(make_store(tmp_path / "x"))
    assert [name for name, _ in files] == ["@bot:test_DEV.db", "cross_signing.json", "device.json"]
    blob = seal(pack(files), TOKEN)
    assert blob.startswith(MAGIC) and b"DEV" not in blob and b"seed" not in blob
    restored = unpack(unseal(blob, TOKEN))
    assert restored == files
    target = tmp_path / "y"
    target.mkdir()
    replace_files(target, restored)
    assert rows(target / "@bot:test_DEV.db", "accounts") == [(1, b"\x01\x02")]
    assert (target / "device.json").read_text() == '{"device_id": "DEV"}'
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in target.iterdir())


def test_sealing_twice_gives_different_blobs(tmp_path: Path) -> None:
    archive = pack(snapshot(make_store(tmp_path / "x")))
    assert seal(archive, TOKEN) != seal(archive, TOKEN)  # a fresh nonce each time


def _flip(index: int) -> Callable[[bytes], bytes]:
    def flip(blob: bytes) -> bytes:
        return blob[:index] + bytes([blob[index] ^ 1]) + blob[index + 1 :]

    return flip


@pytest.mark.parametrize(
    ("tamper", "token", "message"),
    [
        (lambda b: b, "as-token-two", "the as_token changed"),
        (lambda b: b, "", "the as_token changed"),
        (_flip(len(MAGIC)), TOKEN, "the as_token changed"),  # the key ID
        (_flip(len(MAGIC) + 8), TOKEN, "corrupted"),  # the nonce
        (_flip(-1), TOKEN, "corrupted"),  # the tag
        (_flip(len(MAGIC) + 30), TOKEN, "corrupted"),  # the ciphertext
        (lambda b: b[:-1], TOKEN, "corrupted"),
        (lambda b: b[: len(MAGIC) + 20], TOKEN, "not in a known format"),
        (_flip(0), TOKEN, "not in a known format"),
        (lambda b: b"", TOKEN, "not in a known format"),
    ],
)
def test_unseal_refuses(
    tmp_path: Path, tamper: Callable[[bytes], bytes], token: str, message: str
) -> None:
    blob = seal(pack(snapshot(make_store(tmp_path / "x"))), TOKEN)
    with pytest.raises(StoreError, match=message):
        unseal(tamper(blob), token)


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return zlib.compress(out.getvalue())


def _entry(name: str, kind: bytes = tarfile.REGTYPE) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/passwd"
    return info, b"{}" if kind == tarfile.REGTYPE else b""


@pytest.mark.parametrize(
    "archive",
    [
        _tar(_entry("../evil.json")),
        _tar(_entry("sub/device.json")),
        _tar(_entry("/abs.json")),
        _tar(_entry(".hidden.json")),
        _tar(_entry("notes.txt")),
        _tar(_entry("link.json", tarfile.SYMTYPE)),
        _tar(_entry("dir.db", tarfile.DIRTYPE)),
        b"not deflated at all",
        zlib.compress(b"deflated, but not a tar"),
        _tar(_entry("device.json"))[:-40],
    ],
)
def test_unpack_refuses_anything_but_plain_store_files(archive: bytes) -> None:
    with pytest.raises(StoreError):
        unpack(archive)


def test_snapshot_takes_store_files_only(tmp_path: Path) -> None:
    store = make_store(tmp_path / "x")
    (store / ".device.json.tmp").write_text("half")
    (store / "@bot:test_DEV.db-journal").write_bytes(b"j")
    (store / "config.yaml").write_text("x: 1")
    (store / "sub.json").mkdir()
    names = [name for name, _ in snapshot(store)]
    assert names == ["@bot:test_DEV.db", "cross_signing.json", "device.json"]


def test_snapshot_of_a_database_is_consistent_not_a_raw_copy(tmp_path: Path) -> None:
    store = tmp_path / "x"
    store.mkdir()
    db = store / "wal.db"
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("CREATE TABLE t (v TEXT)")
        writer.execute("INSERT INTO t VALUES ('committed-in-the-wal')")
        writer.execute("BEGIN")
        writer.execute("INSERT INTO t VALUES ('not-committed')")
        assert b"committed-in-the-wal" not in db.read_bytes()  # a raw copy would miss it
        ((name, image),) = snapshot(store)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    target = tmp_path / "y"
    target.mkdir()
    replace_files(target, unpack(pack(((name, image),))))
    assert rows(target / "wal.db", "t") == [("committed-in-the-wal",)]


def _set(db: Path, sql: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql)
    conn.close()


@pytest.mark.parametrize(
    ("change", "state_changes"),
    [
        (lambda s: _set(s / "@bot:test_DEV.db", "UPDATE synctokens SET token = 's2'"), False),
        (lambda s: _set(s / "@bot:test_DEV.db", "UPDATE accounts SET account = x'03'"), True),
        (lambda s: (s / "undecryptable.json").write_text("{}"), True),
        (lambda s: (s / "device.json").write_text('{"device_id": "OTHER"}'), True),
        (lambda s: (s / "device.json").unlink(), True),
    ],
)
def test_state_digest_ignores_the_sync_token_only(
    tmp_path: Path, change: Callable[[Path], object], state_changes: bool
) -> None:
    store = make_store(tmp_path / "x")
    before = digests(snapshot(store))
    assert digests(snapshot(store)) == before  # stable while nothing changes
    change(store)
    after = digests(snapshot(store))
    assert (after[0] != before[0]) is state_changes
    assert after[1] != before[1]


def test_replace_files_keeps_what_is_not_the_store(tmp_path: Path) -> None:
    target = make_store(tmp_path / "y")
    (target / "@bot:test_OLD.db").write_bytes(b"old device")
    (target / "@bot:test_OLD.db-journal").write_bytes(b"j")
    (target / ".device.json.tmp").write_bytes(b"t")
    (target / "config.yaml").write_text("x: 1")
    (target / "keep").mkdir()
    replace_files(target, (("device.json", b'{"device_id": "NEW"}'),))
    assert sorted(p.name for p in target.iterdir()) == ["config.yaml", "device.json", "keep"]
