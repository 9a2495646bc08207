"""The IMAP side: fetch each new mail once, in UID order, and hand it to the room side.

The folder's UIDVALIDITY and the last UID whose mail was fully handled are in the
database. A mail is handled (posted, quarantined or refused, and recorded) before the
last UID moves past it; a crash in between fetches it again and its Message-ID, already
recorded, stops a second post. A new UIDVALIDITY (the folder was rebuilt) starts over
from UID 1, with the same protection. Between rounds the connection waits in IDLE (or
polls, where the server has no IDLE); a lost connection is reopened on the next round.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from mautrix.util.async_db import Database

from bridge.mail.imap import MailboxUnavailable

log = logging.getLogger("santeguard.mail.inbox")

Handler = Callable[[bytes, int, int], Awaitable[object]]
ProblemReport = Callable[[str | None], Awaitable[None]]


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

    async def round(self) -> float:
        """Handle new mail, then wait for more; raise (the scheduler retries) on failure."""
        try:
            box = await self._connected()
            for uid in await box.uids_after(self._last):
                raw = await box.fetch(uid)
                await self._handler(raw, self._uidvalidity, uid)
                self._last = uid
                await self._state.set(self._uidvalidity, uid)
            await self._report(None)
            await box.wait(self._wait)
        except MailboxUnavailable as e:
            await self._drop()
            await self._report(e.problem)
            raise
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
