"""Verified accounts, held in memory and written through to the database.

The synchronous gate reads a member's verification on the homeserver's path of every
invite, join and message, so reads come from memory (loaded at start). Every change
goes through this store, which writes the database first and then memory: the
snapshot cannot drift from what is committed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mautrix.util.async_db import Database

from bridge.core.ports import InTransaction
from bridge.db.txn import write_transaction
from bridge.identity.model import Verification

_LOAD_PAGE = 5000  # bindings read per statement at load


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class VerificationStore:
    def __init__(self, db: Database, *, load_page: int = _LOAD_PAGE) -> None:
        self.db = db
        self._load_page = load_page
        self._verifications: dict[str, Verification] = {}

    async def load(self) -> None:
        """Read every binding into a new snapshot, then swap it in.

        A network holds up to hundreds of thousands of bindings, so the snapshot is kept
        compact: rows are read in key order by pages (never the whole table as one
        result list, whose peak the process's RSS would keep), only the columns the
        snapshot holds, and the values bindings share (source, profession, names) are
        stored once.
        """
        verifications: dict[str, Verification] = {}
        shared: dict[Any, Any] = {}  # values are the rows' own (typed by the schema)
        after = ""
        while True:
            rows = await self.db.fetch(
                "SELECT user_id, source, idnps, profession_code, last_name, first_name, "
                "checked_at, valid_until FROM verification WHERE user_id > $1 "
                "ORDER BY user_id LIMIT $2",
                after,
                self._load_page,
            )
            for r in rows:
                code = r["profession_code"]
                verifications[str(r["user_id"])] = Verification(
                    source=shared.setdefault(r["source"], r["source"]),
                    idnps=str(r["idnps"]),
                    profession_code=None if code is None else shared.setdefault(code, code),
                    last_name=shared.setdefault(r["last_name"], r["last_name"]),
                    first_name=shared.setdefault(r["first_name"], r["first_name"]),
                    checked_at=_dt(int(r["checked_at"])),
                    valid_until=_dt(int(r["valid_until"])),
                )
            if len(rows) < self._load_page:
                break
            after = str(rows[-1]["user_id"])
        self._verifications = verifications

    # -- reads (memory) -----------------------------------------------------------------

    def verification(self, user_id: str) -> Verification | None:
        return self._verifications.get(user_id)

    def verified_users(self) -> dict[str, Verification]:
        return dict(self._verifications)

    def users_with_idnps(self, idnps: str) -> list[str]:
        return [u for u, v in self._verifications.items() if v.idnps == idnps]

    # -- writes (database, then memory) -------------------------------------------------

    async def bind(self, user_id: str, verification: Verification, bound_by: str) -> None:
        now = _ms(datetime.now(UTC))
        await self.db.execute(
            "INSERT INTO verification (user_id, idnps, source, profession_code, last_name, "
            "first_name, checked_at, valid_until, bound_by, bound_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
            "ON CONFLICT (user_id) DO UPDATE SET idnps = excluded.idnps, "
            "source = excluded.source, profession_code = excluded.profession_code, "
            "last_name = excluded.last_name, first_name = excluded.first_name, "
            "checked_at = excluded.checked_at, valid_until = excluded.valid_until, "
            "bound_by = excluded.bound_by, bound_at = excluded.bound_at",
            user_id,
            verification.idnps,
            verification.source,
            verification.profession_code,
            verification.last_name,
            verification.first_name,
            _ms(verification.checked_at),
            _ms(verification.valid_until),
            bound_by,
            now,
        )
        self._verifications[user_id] = verification

    async def refresh(
        self,
        user_id: str,
        checked_at: datetime,
        valid_until: datetime,
        profession_code: str | None,
    ) -> None:
        """Extend a binding after a successful re-check (the profession may have changed)."""
        current = self._verifications.get(user_id)
        if current is None:
            return
        await self.db.execute(
            "UPDATE verification SET checked_at = $2, valid_until = $3, profession_code = $4 "
            "WHERE user_id = $1",
            user_id,
            _ms(checked_at),
            _ms(valid_until),
            profession_code,
        )
        self._verifications[user_id] = Verification(
            source=current.source,
            idnps=current.idnps,
            profession_code=profession_code,
            last_name=current.last_name,
            first_name=current.first_name,
            checked_at=checked_at,
            valid_until=valid_until,
        )

    async def unbind(
        self, user_id: str, *, then: InTransaction | None = None
    ) -> Verification | None:
        """Remove the binding; ``then`` runs in the same database transaction (the
        removals the unbinding calls for), so neither commits without the other."""
        async with write_transaction(self.db) as conn:
            await conn.execute("DELETE FROM verification WHERE user_id = $1", user_id)
            if then is not None:
                await then(conn)
        return self._verifications.pop(user_id, None)
