"""Inactive rooms: announced to their members ahead, then closed and their history purged.

TI-Messenger (gematik A_25318/A_25319) deletes a room's content after a fixed time since
its last activity, six months by default; members are told ``inactive_notice`` ahead.
Activity is any event not sent by SantéGuard's own users (its notices do not keep a
room alive), read from the event ledger. Closing is Synapse's room delete API with
``purge``; the purge is then checked event by event (``fetch_event`` answers 404). Every
step is audited; without admin rights the closure is refused by the homeserver, the
admins are alerted and the room is tried again at the next run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from mautrix.util.async_db import Database

from bridge.core.ports import AlertPort, AuditPort, RoomLanguagePort, TextPort
from bridge.retention.policy import human_duration

log = logging.getLogger("santeguard.retention.inactive")


class Step(StrEnum):
    NONE = "none"
    ANNOUNCE = "announce"
    CANCEL = "cancel"
    CLOSE = "close"


def next_step(
    last_activity: int, announced_at: int | None, now: int, *, after_ms: int, notice_ms: int
) -> Step:
    """Pure: what an idle room calls for now (all times in ms).

    Members always get the full notice: a room found idle far past ``after_ms`` is
    announced first and closed ``notice_ms`` later. Activity after the announcement
    cancels it.
    """
    if announced_at is not None:
        if last_activity > announced_at:
            return Step.CANCEL
        if now - last_activity >= after_ms and now - announced_at >= notice_ms:
            return Step.CLOSE
        return Step.NONE
    if now - last_activity >= after_ms - notice_ms:
        return Step.ANNOUNCE
    return Step.NONE


def closing_at(last_activity: int, now: int, *, after_ms: int, notice_ms: int) -> int:
    """Pure: when an announced room will be closed (never sooner than the notice)."""
    return max(last_activity + after_ms, now + notice_ms)


@dataclass(frozen=True, slots=True)
class Inactivity:
    room_id: str
    last_activity_ts: int
    announced_at: int | None
    closed_at: int | None
    delete_id: str | None
    purged_at: int | None


class InactivityStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def touch(self, room_id: str, now: int) -> Inactivity:
        """The room's row, its last activity brought up to date from the ledger (a room
        first seen with no ledger entry counts as active from now: nothing proves it idle)."""
        last = await self.db.fetchval(
            "SELECT MAX(origin_ts) FROM event_ledger WHERE room_id = $1 AND own = $2",
            room_id,
            False,
        )
        row = await self.db.fetchrow("SELECT * FROM room_inactivity WHERE room_id = $1", room_id)
        if row is None:
            ts = int(last) if last is not None else now
            await self.db.execute(
                "INSERT INTO room_inactivity (room_id, last_activity_ts) VALUES ($1, $2) "
                "ON CONFLICT (room_id) DO NOTHING",
                room_id,
                ts,
            )
            return Inactivity(room_id, ts, None, None, None, None)
        ts = int(row["last_activity_ts"])
        if last is not None and int(last) > ts:
            ts = int(last)
            await self.db.execute(
                "UPDATE room_inactivity SET last_activity_ts = $2 WHERE room_id = $1",
                room_id,
                ts,
            )
        return Inactivity(
            room_id,
            ts,
            row["announced_at"],
            row["closed_at"],
            row["delete_id"],
            row["purged_at"],
        )

    async def set_announced(self, room_id: str, at: int | None) -> None:
        await self.db.execute(
            "UPDATE room_inactivity SET announced_at = $2 WHERE room_id = $1", room_id, at
        )

    async def set_closed(self, room_id: str, at: int, delete_id: str) -> None:
        await self.db.execute(
            "UPDATE room_inactivity SET closed_at = $2, delete_id = $3 WHERE room_id = $1",
            room_id,
            at,
            delete_id,
        )

    async def set_purged(self, room_id: str, at: int) -> None:
        await self.db.execute(
            "UPDATE room_inactivity SET purged_at = $2 WHERE room_id = $1", room_id, at
        )

    async def closing(self) -> list[Inactivity]:
        rows = await self.db.fetch(
            "SELECT * FROM room_inactivity WHERE delete_id IS NOT NULL AND purged_at IS NULL"
        )
        return [
            Inactivity(
                r["room_id"],
                int(r["last_activity_ts"]),
                r["announced_at"],
                r["closed_at"],
                r["delete_id"],
                r["purged_at"],
            )
            for r in rows
        ]

    async def ledger_events(self, room_id: str) -> list[str]:
        rows = await self.db.fetch(
            "SELECT event_id FROM event_ledger WHERE room_id = $1 AND purged_at IS NULL",
            room_id,
        )
        return [str(r["event_id"]) for r in rows]

    async def mark_purged(self, event_ids: list[str], at: int) -> None:
        if event_ids:
            await self.db.executemany(
                "UPDATE event_ledger SET purged_at = $2 WHERE event_id = $1",
                [(e, at) for e in event_ids],
            )


class RoomAdminPort(Protocol):
    """The homeserver's admin API (``retention/admin_api.py``)."""

    async def delete_room(
        self, room_id: str, *, message: str | None, purge: bool = True
    ) -> str: ...
    async def delete_status(self, delete_id: str) -> str: ...
    async def event_purged(self, event_id: str) -> bool: ...


class RoomsPort(Protocol):
    bot_mxid: str

    async def joined_rooms(self) -> list[str]: ...
    async def send_notice(self, room_id: str, text: str, html: str | None = None) -> str: ...


class InactiveRooms:
    def __init__(
        self,
        store: InactivityStore,
        enforcer: RoomsPort,
        admin: RoomAdminPort,
        audit: AuditPort,
        alerts: AlertPort,
        text: TextPort,
        *,
        is_protected: Callable[[str], bool],
        languages: RoomLanguagePort,
        default_language: str,
        after_ms: int,
        notice_ms: int,
        clock: Callable[[], float] = time.time,
        status_wait_seconds: float = 30.0,
    ) -> None:
        self._store = store
        self._enforcer = enforcer
        self._admin = admin
        self._audit = audit
        self._alerts = alerts
        self._t = text
        self._protected = is_protected
        self._languages = languages
        self._lang = default_language
        self._after = after_ms
        self._notice = notice_ms
        self._clock = clock
        self._status_wait = status_wait_seconds

    def _now(self) -> int:
        return int(self._clock() * 1000)

    async def run(self) -> None:
        """One pass: announce, cancel or close each protected room; finish closures."""
        for room_id in await self._enforcer.joined_rooms():
            if not self._protected(room_id):
                continue
            try:
                await self._step(room_id)
            except Exception as e:  # one room's failure must not stop the others
                log.warning("Inactivity check of %s failed: %s", room_id, type(e).__name__)
        for row in await self._store.closing():
            await self._finish(row)

    async def _step(self, room_id: str) -> None:
        now = self._now()
        row = await self._store.touch(room_id, now)
        if row.closed_at is not None:
            return
        step = next_step(
            row.last_activity_ts,
            row.announced_at,
            now,
            after_ms=self._after,
            notice_ms=self._notice,
        )
        if step is Step.ANNOUNCE:
            await self._announce(row, now)
        elif step is Step.CANCEL:
            await self._store.set_announced(room_id, None)
            await self._audit.record(
                self._enforcer.bot_mxid, "retention.inactive_cancelled", room_id=room_id
            )
        elif step is Step.CLOSE:
            await self._close(row, now)

    async def _language(self, room_id: str) -> str:
        return await self._languages.language(room_id) or self._lang

    async def _announce(self, row: Inactivity, now: int) -> None:
        lang = await self._language(row.room_id)
        when = closing_at(row.last_activity_ts, now, after_ms=self._after, notice_ms=self._notice)
        idle_n, idle_unit = human_duration(max(1000, now - row.last_activity_ts))
        text = self._t.t(
            "retention.notice.inactive",
            lang,
            idle=self._t.t(f"retention.unit.{idle_unit}", lang, n=idle_n),
            date=datetime.fromtimestamp(when / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )
        await self._enforcer.send_notice(row.room_id, text)
        # Recorded after the notice went out: an announcement nobody saw does not count.
        await self._store.set_announced(row.room_id, now)
        await self._audit.record(
            self._enforcer.bot_mxid,
            "retention.inactive_announced",
            room_id=row.room_id,
            details={"last_activity_ts": row.last_activity_ts, "closing_at": when},
        )

    async def _close(self, row: Inactivity, now: int) -> None:
        lang = await self._language(row.room_id)
        try:
            # Told in the room itself: deleting it removes everyone and its history.
            await self._enforcer.send_notice(
                row.room_id, self._t.t("retention.notice.closed", lang)
            )
            delete_id = await self._admin.delete_room(row.room_id, message=None, purge=True)
        except Exception as e:
            await self._audit.record(
                self._enforcer.bot_mxid,
                "retention.inactive_close_failed",
                room_id=row.room_id,
                details={"error": type(e).__name__},
            )
            await self._alerts.alert(
                "alert.inactive_close_failed", room=row.room_id, error=type(e).__name__
            )
            return
        await self._store.set_closed(row.room_id, now, delete_id)
        await self._audit.record(
            self._enforcer.bot_mxid,
            "retention.inactive_closed",
            room_id=row.room_id,
            details={"last_activity_ts": row.last_activity_ts, "delete_id": delete_id},
        )
        await self._finish(
            Inactivity(row.room_id, row.last_activity_ts, row.announced_at, now, delete_id, None)
        )

    async def _finish(self, row: Inactivity) -> None:
        """Wait (bounded) for the homeserver's purge, then prove it from the ledger."""
        assert row.delete_id is not None
        deadline = asyncio.get_running_loop().time() + self._status_wait
        status = await self._admin.delete_status(row.delete_id)
        while status not in ("complete", "failed") and (
            asyncio.get_running_loop().time() < deadline
        ):
            await asyncio.sleep(0.5)
            status = await self._admin.delete_status(row.delete_id)
        if status != "complete":
            if status == "failed":
                await self._alerts.alert(
                    "alert.inactive_close_failed", room=row.room_id, error="purge failed"
                )
            return  # the next run looks again
        events = await self._store.ledger_events(row.room_id)
        gone = [e for e in events if await self._admin.event_purged(e)]
        now = self._now()
        await self._store.mark_purged(gone, now)
        await self._store.set_purged(row.room_id, now)
        await self._audit.record(
            self._enforcer.bot_mxid,
            "retention.inactive_purged",
            room_id=row.room_id,
            details={"checked": len(events), "gone": len(gone), "present": len(events) - len(gone)},
        )
