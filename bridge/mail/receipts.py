"""Read receipts, both ways, never automatic on delivery.

Inbound mail that asked for a disposition notification gets one (``displayed``, sent
manually in the RFC 8098 sense) only when a verified practitioner's Matrix read receipt
covers it; it goes out through the outbox like any mail. (Inbound MDNs are handled with
the inbound mail: the correspondent's ghost marks the message read.)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bridge.core.ports import EPHEMERAL, AuditPort, RoutesPort
from bridge.db.txn import write_transaction
from bridge.mail.inbound import headers_of
from bridge.mail.mdn import build_mdn
from bridge.mail.outbox import OutboxStore, QueuedMail
from bridge.mail.store import MailStore

log = logging.getLogger("santeguard.mail.receipts")


class ReadReceipts:
    def __init__(
        self,
        store: MailStore,
        outbox: OutboxStore,
        audit: AuditPort,
        *,
        mailbox: str,
        is_practitioner: Callable[[str], bool],
        wake: Callable[[], None],
    ) -> None:
        self._store = store
        self._outbox = outbox
        self._audit = audit
        self._mailbox = mailbox
        self._domain = mailbox.rsplit("@", 1)[1].lower()
        self._is_practitioner = is_practitioner
        self._wake = wake

    def subscribe(self, routes: RoutesPort) -> None:
        routes.on("m.receipt", self.on_receipt, ignore_own=True)

    async def on_receipt(self, event: dict[str, Any]) -> bool:
        room_id = str(event.get("room_id", ""))
        reader = str(event.get("sender", ""))
        content = event.get("content")
        if not event.get(EPHEMERAL) or not isinstance(content, dict):
            return False  # only the homeserver's receipts, not a look-alike room event
        if self._store.link_of(room_id) is None:
            return False
        if not self._is_practitioner(reader):
            return False
        ts = content.get("ts")
        read_at = int(ts) if isinstance(ts, int) else int(datetime.now(UTC).timestamp() * 1000)
        due = await self._store.receipts_due(room_id, read_at)
        for request in due:
            digest = hashlib.sha256(request.event_id.encode()).hexdigest()[:32]
            message_id = f"<mdn.{digest}@{self._domain}>"
            headers = "".join(f"{k}: {v}\r\n" for k, v in headers_of(request.headers).items())
            raw = build_mdn(
                original_message_id=request.message_id,
                original_subject=request.subject,
                original_headers=headers,
                recipient=self._mailbox,
                from_addr=self._mailbox,
                to_addr=request.notify,
                message_id=message_id,
                date=datetime.now(UTC),
                disposition="displayed",
                manual=True,
            )
            mail = QueuedMail(
                f"mdn:{request.event_id}",
                room_id,
                message_id,
                reader,
                request.notify,
                raw,
                kind="mdn",
            )
            async with write_transaction(self._outbox.db) as conn:
                await OutboxStore.enqueue(conn, mail)
                await MailStore.receipt_sent(conn, request.event_id)
            await self._audit.record(
                reader,
                "mail.receipt_queued",
                room_id=room_id,
                subject=request.notify,
                details={"original": request.message_id, "event_id": request.event_id},
            )
        if due:
            self._wake()
        return bool(due)
