"""The IMAP side: fetch each new mail once, in UID order, and hand it to the room side.

The folder's UIDVALIDITY and the last UID whose mail was fully handled are in the
database. A mail is handled (posted, quarantined or refused, and recorded) before the
last UID moves past it; a crash in between fetches it again and its Message-ID, already
recorded, stops a second post. A new UIDVALIDITY (the folder was rebuilt) starts over
from UID 1, with the same protection. Between rounds the connection waits in IDLE (or
polls, where the server has no IDLE). A connection that was working (it handled mail or
completed a wait, or has been up a while) and is lost (a server restart, a network blip,
an idle cut) is reopened at once without alarming anyone; one that cannot be opened, or
breaks before doing anything, is reported and retried later (no tight reconnect loop).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from mautrix.util.async_db import Database

from bridge.mail.imap import MailboxUnavailable

log = logging.getLogger("santeguard.mail.inbox")

Handler = Callable[[bytes, int, int], Awaitable[object]]
ProblemReport = Callable[[str | None], Awaitable[None]]

STABLE_SECONDS = 60.0  # a connection up this long that breaks is reopened at once


class Mailbox(Protocol):
    async def connect(self) -> int: ...
    async def uids_after(self, uid: int) -> list[int]: ...
    async def fetch(self, uid: int) -> bytes: ...
    async def wait(self, timeout: float) -> None: ...
    async def close(self) -> None: ...


class InboxState:
    def __init__(self, db: Database, folder: str) -> None:
        self.db = db
        self.folder = folder

    async def get(self) -> tuple[int, int] | None:
        row = await self.db.fetchrow(
            "SELECT uidvalidity, last_uid FROM mail_mailbox WHERE folder = $1", self.folder
        )
        return None if row is None else (int(row["uidvalidity"]), int(row["last_uid"]))

    async def set(self, uidvalidity: int, last_uid: int) -> None:
        await self.db.execute(
            "INSERT INTO mail_mailbox (folder, uidvalidity, last_uid) VALUES ($1, $2, $3) "
            "ON CONFLICT (folder) DO UPDATE SET uidvalidity = excluded.uidvalidity, "
            "last_uid = excluded.last_uid",
            self.folder,
            uidvalidity,
            last_uid,
        )


MAX_BACKOFF_SECONDS = 60.0


class InboxWatcher:
    """One round per scheduler run: connect if needed, handle what is new, then wait."""

    def __init__(
        self,
        factory: Callable[[], Mailbox],
        state: InboxState,
        handler: Handler,
        report: ProblemReport,
        *,
        wait_seconds: float,
    ) -> None:
        self._factory = factory
        self._state = state
        self._handler = handler
        self._report = report
        self._wait = wait_seconds
        self._box: Mailbox | None = None
        self._uidvalidity = 0
        self._last = 0
        self._opened_at = 0.0  # time.monotonic() of the current connection
        self._worked = False  # the current connection handled mail or completed a wait
        self._failures = 0  # connection attempts failed in a row

    async def round(self) -> float:
        """Handle new mail, then wait for more; return the delay before the next round
        (a growing backoff while the mailbox is unreachable; other failures raise and the
        scheduler retries)."""
        try:
            box = await self._connected()
            for uid in await box.uids_after(self._last):
                raw = await box.fetch(uid)
                await self._handler(raw, self._uidvalidity, uid)
                self._last = uid
                await self._state.set(self._uidvalidity, uid)
                self._worked = True
            await self._report(None)
            self._failures = 0
            await box.wait(self._wait)
            self._worked = True
        except MailboxUnavailable as e:
            was_working = self._box is not None and (
                self._worked or time.monotonic() - self._opened_at >= STABLE_SECONDS
            )
            await self._drop()
            if was_working:
                log.info("IMAP connection lost (%s); reconnecting", e.problem)
                return 0.0
            await self._report(e.problem)  # logged and alerted once per change
            self._failures += 1
            # Back off instead of raising: the scheduler would log a traceback per retry.
            return min(MAX_BACKOFF_SECONDS, 2.0 ** min(self._failures, 6))
        except BaseException:
            await self._drop()
            raise
        return 0.0

    async def _connected(self) -> Mailbox:
        if self._box is not None:
            return self._box
        box = self._factory()
        uidvalidity = await box.connect()
        stored = await self._state.get()
        if stored is None or stored[0] != uidvalidity:
            if stored is not None:
                log.warning(
                    "IMAP folder %s has a new UIDVALIDITY (%d, was %d): reading it again "
                    "from the start (Message-IDs already handled are skipped)",
                    self._state.folder,
                    uidvalidity,
                    stored[0],
                )
            await self._state.set(uidvalidity, 0)
            stored = (uidvalidity, 0)
        self._uidvalidity, self._last = stored
        self._box = box
        self._opened_at = time.monotonic()
        self._worked = False
        return box

    async def _drop(self) -> None:
        box, self._box = self._box, None
        if box is not None:
            try:
                await box.close()
            except Exception as e:
                log.debug("Closing the IMAP connection failed: %s", type(e).__name__)

    async def stop(self) -> None:
        await self._drop()
