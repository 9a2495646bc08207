"""What the room and the admins see of the mail bridge: notices, alerts and audit.

Implements the outbox's ``OutboxEvents`` (each mail's state told in its room, as a reply
to the message it came from: sent ✓, retrying with the reason, failed with the relay's
reply) and the notices of the room → mail side. Texts come from the catalog in the
room's language.

The "✓ sent" notices are posted by a background task, in order, from a bounded queue:
the outbox would otherwise wait for the homeserver (an encrypted send, tens of ms under
load) after every mail, which capped delivery at the homeserver's pace (about 10 mails/s
in a burst, bench/mail.py). The audit record stays inline (it must not wait behind
notices); a notice still queued when the process dies is lost, as a notice that failed
to post always was (the mail itself is sent and recorded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.core.ports import AlertPort, AuditPort, RoomLanguagePort, TextPort
from bridge.mail.outbox import Claimed, OutboxStore
from bridge.mail.smtp import SendResult
from bridge.mail.text import problem_code

log = logging.getLogger("santeguard.mail")


class ReplyingNotices(Protocol):
    async def send_notice(
        self, room_id: str, text: str, html: str | None = None, *, reply_to: str | None = None
    ) -> str: ...


@dataclass(frozen=True, slots=True)
class _Sent:
    """What a "✓ sent" notice needs (not the mail: a backlog must stay small)."""

    room_id: str
    event_id: str
    recipient: str


class MailNotices:
    """Room notices and the outbox's delivery events."""

    def __init__(
        self,
        matrix: ReplyingNotices,
        text: TextPort,
        rooms: RoomLanguagePort,
        outbox: OutboxStore,
        audit: AuditPort,
        alerts: AlertPort,
        *,
        actor: str,
        default_language: str,
        notify_sent: bool,
        backlog: int = 10_000,
    ) -> None:
        self._matrix = matrix
        self._text = text
        self._rooms = rooms
        self._outbox = outbox
        self._audit = audit
        self._alerts = alerts
        self._actor = actor
        self._lang = default_language
        self._notify_sent = notify_sent
        self._backlog = backlog
        self._sent: asyncio.Queue[_Sent] | None = None
        self._poster: asyncio.Task[None] | None = None

    async def notify(
        self, room_id: str, key: str, /, *, reply_to: str | None = None, **params: object
    ) -> None:
        lang = await self._rooms.language(room_id) or self._lang
        await self._matrix.send_notice(
            room_id, self._text.t(key, lang, **params), reply_to=reply_to
        )

    def _reply(self, result: SendResult) -> str:
        code = "" if result.code is None else f"{result.code} "
        return (code + result.reply).strip()[:300] or "-"

    def _problem(self, result: SendResult, lang: str) -> str:
        if result.problem:
            return self._text.t(f"mail.problem.{problem_code(result.problem)}", lang)
        return self._reply(result)

    async def delivered(self, mail: Claimed, result: SendResult) -> None:
        await self._audit.record(
            mail.sender,
            "mail.sent",
            room_id=mail.room_id,
            subject=mail.recipient,
            details=_details(mail, result),
        )
        if mail.kind == "message" and self._notify_sent:
            await self._sent_queue().put(_Sent(mail.room_id, mail.event_id, mail.recipient))

    def _sent_queue(self) -> asyncio.Queue[_Sent]:
        """The backlog of "✓ sent" notices; its poster starts on first use."""
        if self._sent is None:
            self._sent = asyncio.Queue(maxsize=self._backlog)  # full: the outbox waits
        if self._poster is None or self._poster.done():
            self._poster = asyncio.create_task(self._post_sent(self._sent), name="mail-notices")
        return self._sent

    async def _post_sent(self, queue: asyncio.Queue[_Sent]) -> None:
        while True:
            sent = await queue.get()
            try:
                reply_to = sent.event_id if sent.event_id.startswith("$") else None
                await self.notify(sent.room_id, "mail.sent", reply_to=reply_to, to=sent.recipient)
                await self._outbox.set_notified(sent.event_id, "sent")
            except Exception as e:
                log.warning("Could not post a mail's sent notice: %s", type(e).__name__)
            finally:
                queue.task_done()

    async def close(self, timeout: float = 5.0) -> None:
        """Post the notices still queued (for at most ``timeout`` s), then stop."""
        poster, self._poster = self._poster, None
        if poster is None:
            return
        if self._sent is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sent.join(), timeout)
        poster.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poster

    async def retrying(self, mail: Claimed, result: SendResult, delay_s: float) -> None:
        state = f"retry:{result.problem or result.code}"
        if mail.notified == state:
            return  # the room already knows this reason; do not repeat it every retry
        lang = await self._rooms.language(mail.room_id) or self._lang
        await self._audit.record(
            self._actor,
            "mail.retrying",
            room_id=mail.room_id,
            subject=mail.recipient,
            details={**_details(mail, result), "delay_s": round(delay_s)},
        )
        await self.notify(
            mail.room_id,
            "mail.retrying",
            reply_to=_event(mail),
            to=mail.recipient,
            reason=self._problem(result, lang),
            minutes=max(1, round(delay_s / 60)),
        )
        await self._outbox.set_notified(mail.event_id, state)

    async def failed(self, mail: Claimed, result: SendResult, *, gave_up: bool) -> None:
        lang = await self._rooms.language(mail.room_id) or self._lang
        await self._audit.record(
            self._actor,
            "mail.failed",
            room_id=mail.room_id,
            subject=mail.recipient,
            details={**_details(mail, result), "gave_up": gave_up},
        )
        # The admins first: a room the bot can no longer post to must not hide a failure.
        await self._alerts.alert(
            "alert.mail_failed",
            room=mail.room_id,
            to=mail.recipient,
            reply=self._reply(result),
            message_id=mail.message_id,
        )
        await self.notify(
            mail.room_id,
            "mail.gave_up" if gave_up else "mail.failed",
            reply_to=_event(mail),
            to=mail.recipient,
            reply=self._problem(result, lang),
        )
        await self._outbox.set_notified(mail.event_id, "failed")


def _event(mail: Claimed) -> str | None:
    """The Matrix event a mail came from (receipts and packages have none to reply to)."""
    return mail.event_id if mail.event_id.startswith("$") else None


def _details(mail: Claimed, result: SendResult) -> dict[str, Any]:
    return {
        "event_id": mail.event_id,
        "message_id": mail.message_id,
        "kind": mail.kind,
        "code": result.code,
        "problem": result.problem,
        "attempts": mail.attempts + 1,
    }
