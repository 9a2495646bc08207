"""Links, the allow-list, the Message-ID ↔ event map, read-receipt requests and room files.

Links and the allow-list are read on every message, so they are kept in memory (loaded at
start, changed only through this store); everything else is read from the database.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Connection, Database

from bridge.db.txn import write_transaction
from bridge.mail.allowlist import AllowList


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Link:
    room_id: str
    address: str
    tag: str
    subject: str
    linked_by: str


@dataclass(frozen=True, slots=True)
class RoomFile:
    event_id: str
    name: str
    mimetype: str
    size: int
    url: str
    file_info: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class ReceiptRequest:
    event_id: str
    room_id: str
    message_id: str
    notify: str
    subject: str
    headers: str


class MailStore:
    def __init__(self, db: Database, *, patterns: tuple[str, ...] = ()) -> None:
        self.db = db
        self._patterns = patterns
        self._links: dict[str, Link] = {}
        self._tags: dict[str, str] = {}
        self.allowlist = AllowList(frozenset(), patterns)

    async def load(self) -> None:
        rows = await self.db.fetch(
            "SELECT room_id, address, tag, subject, linked_by FROM mail_link"
        )
        self._links = {
            str(r["room_id"]): Link(
                str(r["room_id"]),
                str(r["address"]),
                str(r["tag"]),
                str(r["subject"]),
                str(r["linked_by"]),
            )
            for r in rows
        }
        self._tags = {link.tag: room for room, link in self._links.items()}
        domains = await self.db.fetch("SELECT domain FROM mail_allowlist")
        self.allowlist = AllowList(frozenset(str(r["domain"]) for r in domains), self._patterns)

    # Links -------------------------------------------------------------------------

    def link_of(self, room_id: str) -> Link | None:
        return self._links.get(room_id)

    def room_for_tag(self, tag: str) -> str | None:
        return self._tags.get(tag)

    def links(self) -> list[Link]:
        return sorted(self._links.values(), key=lambda link: link.room_id)

    async def link(self, link: Link) -> None:
        await self.db.execute(
            "INSERT INTO mail_link (room_id, address, tag, subject, linked_by, linked_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (room_id) DO UPDATE SET "
            "address = excluded.address, subject = excluded.subject, "
            "linked_by = excluded.linked_by, linked_at = excluded.linked_at",
            link.room_id,
            link.address,
            link.tag,
            link.subject,
            link.linked_by,
            now_ms(),
        )
        self._links[link.room_id] = link
        self._tags[link.tag] = link.room_id

    async def unlink(self, room_id: str) -> Link | None:
        await self.db.execute("DELETE FROM mail_link WHERE room_id = $1", room_id)
        link = self._links.pop(room_id, None)
        if link is not None:
            self._tags.pop(link.tag, None)
        return link

    async def reload_allowlist(self) -> None:
        """Pick up a list imported by the CLI while running."""
        domains = await self.db.fetch("SELECT domain FROM mail_allowlist")
        self.allowlist = AllowList(frozenset(str(r["domain"]) for r in domains), self._patterns)

    # Allow-list --------------------------------------------------------------------

    async def replace_allowlist(self, domains: frozenset[str]) -> None:
        """All or nothing: the old list stays in force until the new one is committed."""
        now = now_ms()
        async with write_transaction(self.db) as conn:
            await conn.execute("DELETE FROM mail_allowlist")
            await conn.executemany(
                "INSERT INTO mail_allowlist (domain, imported_at) VALUES ($1, $2)",
                [(d, now) for d in sorted(domains)],
            )
        self.allowlist = AllowList(domains, self._patterns)

    # Message-ID ↔ event --------------------------------------------------------------

    @staticmethod
    async def remember(
        conn: Connection, message_id: str, room_id: str, event_id: str, direction: str, address: str
    ) -> None:
        await conn.execute(
            "INSERT INTO mail_message (message_id, room_id, event_id, direction, address, "
            "created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (message_id) DO NOTHING",
            message_id,
            room_id,
            event_id,
            direction,
            address,
            now_ms(),
        )

    async def message_for_event(self, event_id: str) -> str | None:
        value = await self.db.fetchval(
            "SELECT message_id FROM mail_message WHERE event_id = $1", event_id
        )
        return None if value is None else str(value)

    async def event_for_message(self, message_id: str) -> tuple[str, str] | None:
        """(room, event) of a mail SantéGuard sent or posted."""
        row = await self.db.fetchrow(
            "SELECT room_id, event_id FROM mail_message WHERE message_id = $1", message_id
        )
        return None if row is None else (str(row["room_id"]), str(row["event_id"]))

    async def recent_messages(self, room_id: str, limit: int = 10) -> list[str]:
        """The room's latest Message-IDs, oldest first (for References)."""
        rows = await self.db.fetch(
            "SELECT message_id FROM mail_message WHERE room_id = $1 AND message_id NOT LIKE "
            "'<mdn.%' ORDER BY created_at DESC LIMIT $2",
            room_id,
            limit,
        )
        return [str(r["message_id"]) for r in reversed(rows)]

    # Read-receipt requests -----------------------------------------------------------

    @staticmethod
    async def want_receipt(conn: Connection, request: ReceiptRequest) -> None:
        await conn.execute(
            "INSERT INTO mail_receipt (event_id, room_id, message_id, notify, subject, headers, "
            "posted_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
            request.event_id,
            request.room_id,
            request.message_id,
            request.notify,
            request.subject,
            request.headers,
            now_ms(),
        )

    async def receipts_due(self, room_id: str, read_at_ms: int) -> list[ReceiptRequest]:
        """Requests for mail posted in the room before the reader's receipt."""
        rows = await self.db.fetch(
            "SELECT event_id, room_id, message_id, notify, subject, headers FROM mail_receipt "
            "WHERE room_id = $1 AND posted_at <= $2",
            room_id,
            read_at_ms,
        )
        return [
            ReceiptRequest(
                str(r["event_id"]),
                str(r["room_id"]),
                str(r["message_id"]),
                str(r["notify"]),
                str(r["subject"]),
                str(r["headers"]),
            )
            for r in rows
        ]

    @staticmethod
    async def receipt_sent(conn: Connection, event_id: str) -> None:
        await conn.execute("DELETE FROM mail_receipt WHERE event_id = $1", event_id)

    # Room files ----------------------------------------------------------------------

    async def remember_file(self, room_id: str, event_id: str, f: RoomFile) -> None:
        await self.db.execute(
            "INSERT INTO mail_file (event_id, room_id, name, mimetype, size, url, file_info, "
            "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "ON CONFLICT (event_id) DO NOTHING",
            event_id,
            room_id,
            f.name,
            f.mimetype,
            f.size,
            f.url,
            None if f.file_info is None else json.dumps(f.file_info),
            now_ms(),
        )

    async def room_files(self, room_id: str, limit: int = 50) -> list[RoomFile]:
        rows = await self.db.fetch(
            "SELECT event_id, name, mimetype, size, url, file_info FROM mail_file "
            "WHERE room_id = $1 ORDER BY created_at DESC LIMIT $2",
            room_id,
            limit,
        )
        return [
            RoomFile(
                str(r["event_id"]),
                str(r["name"]),
                str(r["mimetype"]),
                int(r["size"]),
                str(r["url"]),
                None if r["file_info"] is None else json.loads(r["file_info"]),
            )
            for r in rows
        ]

    # Quarantine ----------------------------------------------------------------------

    async def quarantined(self, limit: int = 20) -> list[tuple[str, str, str, int]]:
        """(Message-ID, sender, reason, received at ms), newest first."""
        rows = await self.db.fetch(
            "SELECT message_id, from_addr, reason, received_at FROM mail_quarantine "
            "ORDER BY id DESC LIMIT $1",
            limit,
        )
        return [
            (str(r["message_id"]), str(r["from_addr"]), str(r["reason"]), int(r["received_at"]))
            for r in rows
        ]
