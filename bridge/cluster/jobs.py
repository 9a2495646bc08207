"""Scheduled jobs run once per period, whichever replica leads and across failovers.

Only the leader runs the scheduler; the claims make that hold even when leadership
changes hands (a new leader does not re-run a job its predecessor ran a minute ago) and
if two schedulers ever ran at once. A run is claimed with one conditional statement
that moves ``next_due`` forward: of two claimants, exactly one gets the row.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mautrix.util.async_db import Database


def _now_ms() -> int:
    return int(time.time() * 1000)


class JobClaims:
    def __init__(
        self, db: Database, replica_id: str, *, clock: Callable[[], int] = _now_ms
    ) -> None:
        self._db = db
        self.replica_id = replica_id
        self._clock = clock

    async def due_in(self, name: str) -> float | None:
        """Seconds until ``name`` is next due, or None if it never ran anywhere."""
        due = await self._db.fetchval("SELECT next_due FROM job_run WHERE name = $1", name)
        if due is None:
            return None
        return max(0.0, (int(due) - self._clock()) / 1000)

    async def claim(self, name: str, hold_seconds: float, *, force: bool = False) -> bool:
        """Claim a run of ``name`` if it is due (or ``force``d: triggered on purpose);
        until it finishes, no one else may claim it for ``hold_seconds``."""
        now = self._clock()
        due = now + int(hold_seconds * 1000)
        await self._db.execute(
            "INSERT INTO job_run (name, next_due, runs) VALUES ($1, 0, 0) "
            "ON CONFLICT (name) DO NOTHING",
            name,
        )
        row = await self._db.fetchrow(
            "UPDATE job_run SET next_due = $2, last_started = $3, replica = $4, "
            "runs = runs + 1 WHERE name = $1 AND (next_due <= $3 OR $5) RETURNING runs",
            name,
            due,
            now,
            self.replica_id,
            force,
        )
        return row is not None

    async def finished(self, name: str, outcome: str, next_in_seconds: float) -> None:
        """Record the run's end; the job is next due ``next_in_seconds`` from now."""
        now = self._clock()
        await self._db.execute(
            "UPDATE job_run SET next_due = $2, last_finished = $3, last_outcome = $4 "
            "WHERE name = $1",
            name,
            now + int(next_in_seconds * 1000),
            now,
            outcome,
        )
