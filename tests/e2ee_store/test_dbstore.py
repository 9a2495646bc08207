"""The stored device in the database, on SQLite and PostgreSQL: restore, save, fencing."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from mautrix.util.async_db import Database

from bridge.e2ee.device.dbstore import DeviceStoreDb, StoreError, StoreFenced, reencrypt
from tests.e2ee_store.test_archive import make_store, rows

TOKEN = "as-token-one"


async def _row(db: Database) -> Any:
    return await db.fetchrow("SELECT generation, data, saved_by, claimed_by FROM e2ee_store")


def _files(store: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in store.iterdir() if p.suffix == ".json"}


async def test_first_start_keeps_local_files_then_saves_them(db: Database, tmp_path: Path) -> None:
    x = make_store(tmp_path / "x")
    a = DeviceStoreDb(db, TOKEN, "replica-a")
    assert await a.restore(x) is False  # nothing stored: the directory (a migration) stays
    assert (x / "device.json").exists()
    assert a.generation == 1
    assert await a.checkpoint(x) is True
    assert await a.checkpoint(x) is False  # unchanged: nothing written
    row = await _row(db)
    assert (row["generation"], row["saved_by"], row["claimed_by"]) == (2, "replica-a", "replica-a")
    assert b"DEV" not in bytes(row["data"])  # sealed
    (x / "undecryptable.json").write_text('{"!r": {}}')
    assert await a.checkpoint(x) is True
    assert (await _row(db))["generation"] == 3


async def test_another_replica_restores_into_an_empty_directory(
    db: Database, tmp_path: Path
) -> None:
    x = make_store(tmp_path / "x")
    a = DeviceStoreDb(db, TOKEN, "replica-a")
    await a.restore(x)
    await a.checkpoint(x)
    y = tmp_path / "y"
    y.mkdir()
    (y / "@bot:test_STALE.db").write_bytes(b"a previous term's leftovers")
    b = DeviceStoreDb(db, TOKEN, "replica-b")
    assert await b.restore(y) is True
    assert _files(y) == _files(x)
    assert sorted(p.name for p in y.iterdir()) == sorted(p.name for p in x.iterdir())
    assert rows(y / "@bot:test_DEV.db", "accounts") == [(1, b"\x01\x02")]
    assert await b.checkpoint(y) is False  # what was restored is what is stored


@pytest.mark.parametrize("changed", [True, False])
async def test_a_replica_that_lost_the_device_never_saves_over_the_new_leader(
    db: Database, tmp_path: Path, changed: bool
) -> None:
    x, y = make_store(tmp_path / "x"), tmp_path / "y"
    y.mkdir()
    a = DeviceStoreDb(db, TOKEN, "replica-a")
    await a.restore(x)
    await a.checkpoint(x)
    b = DeviceStoreDb(db, TOKEN, "replica-b")
    await b.restore(y)  # the takeover alone fences replica-a
    taken = await _row(db)
    if changed:
        (x / "undecryptable.json").write_text("{}")
    with pytest.raises(StoreFenced, match="replica-b"):
        await a.checkpoint(x)
    assert a.fenced
    assert await _row(db) == taken
    with pytest.raises(StoreFenced):  # and it stays fenced, without asking the database
        await a.checkpoint(x)
    (y / "undecryptable.json").write_text('{"b": 1}')
    assert await b.checkpoint(y) is True
    assert (await _row(db))["saved_by"] == "replica-b"


async def test_only_the_sync_token_changed_is_not_saved_until_it_is_stale(
    db: Database, tmp_path: Path
) -> None:
    x = make_store(tmp_path / "x")
    a = DeviceStoreDb(db, TOKEN, "replica-a")
    await a.restore(x)
    await a.checkpoint(x)

    def new_token(token: str) -> None:
        with sqlite3.connect(x / "@bot:test_DEV.db") as conn:
            conn.execute("UPDATE synctokens SET token = ?", (token,))
        conn.close()

    new_token("s2")
    assert await a.checkpoint(x) is False
    stale = DeviceStoreDb(db, TOKEN, "replica-b", token_refresh_seconds=0)
    y = tmp_path / "y"
    y.mkdir()
    await stale.restore(y)
    assert rows(y / "@bot:test_DEV.db", "synctokens") == [(1, "s1_token")]
    assert await stale.checkpoint(y) is False  # nothing changed at all
    with sqlite3.connect(y / "@bot:test_DEV.db") as conn:
        conn.execute("UPDATE synctokens SET token = 's3'")
    conn.close()
    assert await stale.checkpoint(y) is True


def _flip_last(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 1])


@pytest.mark.parametrize(
    ("token", "tamper", "message"),
    [
        ("as-token-two", None, "cannot decrypt the stored device: the as_token changed"),
        (TOKEN, _flip_last, "corrupted"),
    ],
)
async def test_a_stored_device_that_does_not_open_fails_closed(
    db: Database,
    tmp_path: Path,
    token: str,
    tamper: Callable[[bytes], bytes] | None,
    message: str,
) -> None:
    x = make_store(tmp_path / "x")
    a = DeviceStoreDb(db, TOKEN, "replica-a")
    await a.restore(x)
    await a.checkpoint(x)
    if tamper is not None:
        data = bytes((await _row(db))["data"])
        await db.execute("UPDATE e2ee_store SET data = $1", tamper(data))
    y = make_store(tmp_path / "y")
    (y / "device.json").write_text('{"device_id": "LOCAL"}')
    b = DeviceStoreDb(db, token, "replica-b")
    with pytest.raises(StoreError, match=message):
        await b.restore(y)
    assert (y / "device.json").read_text() == '{"device_id": "LOCAL"}'  # left as it was


async def test_reencrypt_for_a_new_as_token(db: Database, tmp_path: Path) -> None:
    assert await reencrypt(db, TOKEN, "as-token-two") is False  # nothing stored
    x = make_store(tmp_path / "x")
    a = DeviceStoreDb(db, TOKEN, "replica-a")
    await a.restore(x)
    await a.checkpoint(x)
    with pytest.raises(StoreError, match="as_token changed"):
        await reencrypt(db, "wrong", "as-token-two")
    assert await reencrypt(db, TOKEN, "as-token-two") is True
    (x / "undecryptable.json").write_text("{}")
    with pytest.raises(StoreFenced):  # a replica still on the old token is fenced
        await a.checkpoint(x)
    y = tmp_path / "y"
    y.mkdir()
    assert await DeviceStoreDb(db, "as-token-two", "replica-b").restore(y) is True
    assert _files(y)["device.json"] == b'{"device_id": "DEV"}'
    with pytest.raises(StoreError, match="as_token changed"):
        await DeviceStoreDb(db, TOKEN, "replica-c").restore(tmp_path)


class _LostAnswer:
    """The database, except that one UPDATE commits and then its answer is lost."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.lose = False

    async def fetchrow(self, query: str, *args: Any) -> Any:
        return await self._db.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        value = await self._db.fetchval(query, *args)
        if self.lose and query.startswith("UPDATE"):
            self.lose = False
            raise ConnectionResetError("connection lost after the commit")
        return value


async def test_a_save_whose_answer_was_lost_does_not_fence_itself(
    db: Database, tmp_path: Path
) -> None:
    x = make_store(tmp_path / "x")
    flaky = _LostAnswer(db)
    a = DeviceStoreDb(cast(Database, flaky), TOKEN, "replica-a")
    await a.restore(x)
    flaky.lose = True
    with pytest.raises(ConnectionResetError):
        await a.checkpoint(x)
    assert (await _row(db))["generation"] == 2  # it did commit
    assert await a.checkpoint(x) is True  # not fenced by its own write
    assert (await _row(db))["generation"] == 3


class _Gated:
    """The database, with UPDATEs held until ``gate`` opens."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def fetchrow(self, query: str, *args: Any) -> Any:
        return await self._db.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        self.waiting.set()
        await self.gate.wait()
        return await self._db.fetchval(query, *args)


async def test_a_cancelled_save_still_completes_and_is_accounted_for(
    db: Database, tmp_path: Path
) -> None:
    x = make_store(tmp_path / "x")
    gated = _Gated(db)
    a = DeviceStoreDb(cast(Database, gated), TOKEN, "replica-a")
    await a.restore(x)
    task = asyncio.create_task(a.checkpoint(x))
    await asyncio.wait_for(gated.waiting.wait(), 10)
    task.cancel()  # as ``stop`` cancels the sync loop in the middle of a save
    with pytest.raises(asyncio.CancelledError):
        await task
    later = asyncio.create_task(a.checkpoint(x))  # the save at stop
    await asyncio.sleep(0.05)
    assert not later.done()  # waits for the first write
    gated.gate.set()
    assert await later is False  # that write saved this very state: nothing to add
    assert (await _row(db))["generation"] == 2
    (x / "undecryptable.json").write_text("{}")
    assert await a.checkpoint(x) is True  # and it did not fence itself


async def test_checkpoint_before_restore_is_refused(db: Database, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not restored"):
        await DeviceStoreDb(db, TOKEN, "replica-a").checkpoint(make_store(tmp_path / "x"))


async def test_concurrent_takeovers_get_distinct_generations(db: Database, tmp_path: Path) -> None:
    stores = [DeviceStoreDb(db, TOKEN, f"replica-{i}") for i in range(4)]
    dirs = [tmp_path / str(i) for i in range(4)]
    for d in dirs:
        d.mkdir()
    await asyncio.gather(*(s.restore(d) for s, d in zip(stores, dirs, strict=True)))
    assert sorted(s.generation or 0 for s in stores) == [1, 2, 3, 4]
