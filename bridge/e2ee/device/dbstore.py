"""The device's store kept in the database (``encryption.store_in_database``).

The whole store directory is one row of ``e2ee_store`` (bridge/db/upgrade/
v09_e2ee_store.py), sealed with a key derived from the appservice's ``as_token``
(``store_archive``). Rotating the ``as_token`` needs the old one once (``reencrypt``);
otherwise the device refuses to start ("the as_token changed"), it never makes a new one.

``restore`` takes the device over: it increments ``generation`` (which fences the replica
that held it) and replaces the store directory's files with the saved ones.
``checkpoint`` saves, with compare-and-set on ``generation``; it runs before each /sync
request, so nothing the homeserver considers delivered is missing from the database. A
save finding another generation raises ``StoreFenced``: another replica took over. When
nothing but the sync token changed, nothing is written (the token is saved at most every
``token_refresh_seconds``; an older token only makes the homeserver resend).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from mautrix.util.async_db import Database

from bridge.e2ee.device.store_archive import (
    StoreError,
    digests,
    pack,
    replace_files,
    seal,
    snapshot,
    unpack,
    unseal,
)

log = logging.getLogger("santeguard.crypto.store")

__all__ = ["DeviceStoreDb", "StoreError", "StoreFenced", "reencrypt"]


class StoreFenced(StoreError):
    """Another replica took the device over: this one must stop syncing and not save."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class DeviceStoreDb:
    """The stored device of one replica: ``restore`` once, then ``checkpoint``."""

    def __init__(
        self, db: Database, as_token: str, replica_id: str, *, token_refresh_seconds: float = 300
    ) -> None:
        self._db = db
        self._as_token = as_token
        self.replica_id = replica_id
        self._refresh = token_refresh_seconds
        self.generation: int | None = None  # set by ``restore``
        self.fenced = False
        self._digests = (b"", b"")
        self._saved_at = 0.0
        self._lock = asyncio.Lock()
        self._writing: asyncio.Future[None] | None = None
        self._pending: tuple[int, int, str] | None = None  # a write of unknown outcome

    async def restore(self, store: Path) -> bool:
        """Take the device over and write it into ``store``; False if none was saved yet
        (the files already in ``store`` are kept: the first save stores them)."""
        async with self._lock:
            await self._wait_writing()
            row = await self._claim()
            self.generation, self.fenced, self._pending = int(row["generation"]), False, None
            if row["data"] is None:
                log.info("No device stored in the database yet (generation %d)", self.generation)
                self._digests = (b"", b"")
                return False
            files = unpack(unseal(bytes(row["data"]), self._as_token))
            replace_files(store, files)
            self._digests = await asyncio.to_thread(digests, files)
            self._saved_at = time.monotonic()
            log.info(
                "Restored the encrypted device from the database (generation %d)", self.generation
            )
            return True

    async def _claim(self) -> Any:
        args = (self.replica_id, _now_ms())
        for _ in range(3):
            row = await self._db.fetchrow(
                "UPDATE e2ee_store SET generation = generation + 1, claimed_by = $1, "
                "claimed_at = $2 WHERE id = 1 RETURNING generation, data",
                *args,
            )
            row = row or await self._db.fetchrow(
                "INSERT INTO e2ee_store (id, generation, claimed_by, claimed_at) "
                "VALUES (1, 1, $1, $2) ON CONFLICT (id) DO NOTHING RETURNING generation, data",
                *args,
            )
            if row is not None:
                return row
        raise StoreError("could not take the stored device over")

    async def checkpoint(self, store: Path) -> bool:
        """Save the store if it changed; True if written. ``StoreFenced`` if taken over
        (checked even when nothing changed: one small read)."""
        async with self._lock:
            await self._wait_writing()
            if self.fenced:
                raise StoreFenced("the encrypted device was taken over by another replica")
            if self.generation is None:
                raise StoreError("the stored device was not restored first")
            files = snapshot(store)  # synchronous: one consistent instant of the store
            found = await asyncio.to_thread(digests, files)
            stale = time.monotonic() - self._saved_at >= self._refresh
            if found[0] == self._digests[0] and (found[1] == self._digests[1] or not stale):
                await self._confirm()
                return False
            blob = await asyncio.to_thread(lambda: seal(pack(files), self._as_token))
            # Shielded: a cancelled caller must not leave a commit we did not account for.
            self._writing = asyncio.ensure_future(self._write(blob, found))
            await asyncio.shield(self._writing)
            return True

    async def _wait_writing(self) -> None:
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writing)
            self._writing = None

    async def _confirm(self) -> None:
        """``StoreFenced`` unless the stored generation is still this replica's."""
        row = await self._db.fetchrow(
            "SELECT generation, saved_at, saved_by, claimed_by FROM e2ee_store WHERE id = 1"
        )
        if row is not None and self._pending is not None:
            # The last write failed in flight: if it committed, its generation is ours.
            if (int(row["generation"]), row["saved_at"], row["saved_by"]) == self._pending:
                self.generation = self._pending[0]
        self._pending = None
        if row is None or int(row["generation"]) != self.generation:
            self.fenced = True
            holder = f"{row['claimed_by']} (generation {row['generation']})" if row else "?"
            raise StoreFenced(
                f"the encrypted device was taken over by replica {holder}; this replica "
                f"(generation {self.generation}) stops it and does not save over it"
            )

    async def _write(self, blob: bytes, found: tuple[bytes, bytes]) -> None:
        if self._pending is not None:
            await self._confirm()
        assert self.generation is not None
        expected, now = self.generation, _now_ms()
        self._pending = (expected + 1, now, self.replica_id)
        done = await self._db.fetchval(
            "UPDATE e2ee_store SET generation = $1, data = $2, saved_at = $3, saved_by = $4 "
            "WHERE id = 1 AND generation = $5 RETURNING generation",
            expected + 1,
            blob,
            now,
            self.replica_id,
            expected,
        )
        self._pending = None
        if done is None:
            await self._confirm()  # the generation moved: raises StoreFenced
            raise StoreError("the stored device was not saved")
        self.generation = expected + 1
        self._digests, self._saved_at = found, time.monotonic()
        log.debug("Saved the encrypted device (generation %d, %d bytes)", expected + 1, len(blob))


async def reencrypt(db: Database, old_as_token: str, new_as_token: str) -> bool:
    """Re-encrypt the stored device for a new ``as_token`` (run with the device stopped).

    The generation is incremented, so a replica still running on the old token is fenced.
    False if no device is stored; ``StoreError`` if the old token does not open it.
    """
    row = await db.fetchrow("SELECT generation, data FROM e2ee_store WHERE id = 1")
    if row is None or row["data"] is None:
        return False
    blob = seal(unseal(bytes(row["data"]), old_as_token), new_as_token)
    done = await db.fetchval(
        "UPDATE e2ee_store SET generation = generation + 1, data = $1 "
        "WHERE id = 1 AND generation = $2 RETURNING generation",
        blob,
        int(row["generation"]),
    )
    if done is None:
        raise StoreFenced("the stored device changed while it was re-encrypted; run it again")
    return True
