"""Builds the mail capability from the config and the ports it needs (no behaviour here)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from mautrix.util.async_db import Database

from bridge.config import Config, ConfigError
from bridge.core.ports import AlertPort, AuditPort, RoomLanguagePort, Subscriber, TextPort
from bridge.core.tasks import honour_cancellation
from bridge.e2ee.attachments import decrypt_attachment, encrypt_attachment
from bridge.e2ee.device import BotDevice
from bridge.identity.store import VerificationStore
from bridge.mail.commands import MailCommands
from bridge.mail.ghosts import Ghosts
from bridge.mail.health import MailHealth, MailMetrics
from bridge.mail.imap import ImapMailbox, ImapSettings
from bridge.mail.inbound import MailToRoom
from bridge.mail.inbox import InboxState, InboxWatcher
from bridge.mail.mime import MimeLimits
from bridge.mail.outbound import Mailbox, RoomToMail
from bridge.mail.outbox import OutboxStore, OutboxWorker
from bridge.mail.policy import RetrySchedule
from bridge.mail.receipts import ReadReceipts
from bridge.mail.service import MailNotices
from bridge.mail.smtp import SendResult, SmtpRelay, SmtpSettings
from bridge.mail.store import MailStore
from bridge.mail.tls import TlsFiles, local_problems
from bridge.matrix.client import MatrixClient
from bridge.matrix.media import MediaClient
from bridge.ops.metrics import Metrics
from bridge.ops.scheduler import Job

log = logging.getLogger("santeguard.mail")


@dataclass
class MailParts:
    store: MailStore
    outbox: OutboxStore
    commands: MailCommands
    health: MailHealth | None = None
    subscribers: list[Subscriber] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    relay: SmtpRelay | None = None
    inbox: InboxWatcher | None = None
    notices: MailNotices | None = None

    async def start(self) -> None:
        await self.store.load()

    async def stop(self) -> None:
        if self.inbox is not None:
            await self.inbox.stop()
        if self.notices is not None:
            await self.notices.close()
        if self.relay is not None:
            await self.relay.close()


def tls_files(config: Config) -> TlsFiles:
    m = config.mail
    return TlsFiles(
        ca_file=Path(m.ca_file or ""),
        client_cert=Path(m.client_cert) if m.client_cert else None,
        client_key=Path(m.client_key) if m.client_key else None,
    )


def build_mail(
    config: Config,
    *,
    db: Database,
    matrix: MatrixClient,
    enforcer: MatrixClient | None = None,
    crypto: BotDevice | None,
    session: aiohttp.ClientSession,
    verifications: VerificationStore,
    joined: Callable[[str], bool],
    rooms_language: RoomLanguagePort,
    audit: AuditPort,
    alerts: AlertPort,
    text: TextPort,
    metrics: Metrics,
    trigger: Callable[[str], None],
    room_name: Callable[[str], Awaitable[str | None]],
    own_users: frozenset[str],
) -> MailParts:
    m = config.mail
    store = MailStore(db, patterns=tuple(m.allowlist_patterns))
    outbox = OutboxStore(db, lease_ms=int(m.claim_seconds * 1000))
    if not m.enabled or m.address is None:
        commands = MailCommands(
            store=store,
            outbox=outbox,
            health=None,
            audit=audit,
            room_name=room_name,
            xdm=None,
            mailbox=None,
            admins=frozenset(config.bot.admins),
        )
        return MailParts(store, outbox, commands)
    if crypto is None:  # the config model refuses mail without encryption
        raise ConfigError("mail.enabled needs encryption.enabled")
    mail_metrics = MailMetrics(metrics.registry)
    health = MailHealth(mail_metrics, alerts)
    files = tls_files(config)
    relay = SmtpRelay(
        SmtpSettings(
            host=m.smtp_host,
            port=m.smtp_port,
            mode=m.smtp_tls,
            tls=files,
            sender=m.address,
            username=m.smtp_username,
            password=m.smtp_password.get_secret_value() if m.smtp_password else None,
        )
    )
    media = MediaClient(
        session, config.homeserver.address, config.appservice.as_token.get_secret_value()
    )
    bot_prefix = f"@{config.appservice.bot_username}_"

    def is_own(user_id: str) -> bool:
        return user_id in own_users or user_id.startswith(bot_prefix)

    def wake() -> None:
        trigger("mail_outbox")

    notices = MailNotices(
        matrix,
        text,
        rooms_language,
        outbox,
        audit,
        alerts,
        actor=matrix.bot_mxid,
        default_language=config.bot.language,
        notify_sent=m.notify_sent,
    )
    mailbox = Mailbox(m.address, m.request_read_receipts, m.max_mail_bytes)
    room_to_mail = RoomToMail(
        store,
        outbox,
        mailbox,
        verifications,
        media,
        decrypt_attachment,
        notices,
        audit,
        joined=joined,
        is_own_user=is_own,
        command_prefix=config.bot.prefix,
        wake=wake,
    )

    def is_practitioner(user_id: str) -> bool:
        v = verifications.verification(user_id)
        return not is_own(user_id) and v is not None and v.is_valid_at(datetime.now(UTC))

    receipts = ReadReceipts(
        store, outbox, audit, mailbox=m.address, is_practitioner=is_practitioner, wake=wake
    )

    async def on_result(result: SendResult) -> None:
        mail_metrics.outbound.labels(outcome=result.outcome).inc()
        if result.outcome == "sent" or result.problem is None:
            await health.report("smtp", None)
        else:
            await health.report("smtp", result.problem)

    worker = OutboxWorker(
        outbox,
        relay,
        notices,
        RetrySchedule(
            base_seconds=m.retry_base_seconds,
            max_seconds=m.retry_max_seconds,
            give_up_seconds=m.give_up_days * 86400,
        ),
        on_result=on_result,
    )
    ghosts = Ghosts(
        matrix,
        crypto,
        bot_username=config.appservice.bot_username,
        domain=config.homeserver.domain,
        enforcer=enforcer,
    )
    to_room = MailToRoom(
        store,
        ghosts,
        media,
        encrypt_attachment,
        audit,
        alerts,
        own_domain=mailbox.domain,
        own_address=m.address,
        actor=matrix.bot_mxid,
        text=text,
        rooms=rooms_language,
        language=config.bot.language,
        limits=MimeLimits(max_bytes=m.max_mail_bytes),
        on_outcome=lambda status: mail_metrics.inbound.labels(outcome=status).inc(),
    )
    password = m.imap_password.get_secret_value() if m.imap_password else ""
    imap = ImapSettings(
        host=m.imap_host,
        port=m.imap_port,
        tls=files,
        username=m.imap_username or "",
        password=password,
        folder=m.imap_folder,
        idle_seconds=m.idle_seconds,
        poll_seconds=m.poll_seconds,
    )

    async def imap_problem(problem: str | None) -> None:
        await health.report("imap", problem)

    watcher = InboxWatcher(
        lambda: ImapMailbox(imap),
        InboxState(db, m.imap_folder),
        to_room.handle,
        imap_problem,
        wait_seconds=m.idle_seconds,
    )

    async def probe() -> None:
        await store.reload_allowlist()
        problems = local_problems(files, datetime.now(UTC))
        health.client_cert_expiry(files.client_cert)
        await health.report("certificate", problems[0] if problems else None)
        problem = await relay.probe()
        honour_cancellation()  # a stop during the probe must stop it (see outbox.py)
        await health.report("smtp", problem)

    async def deliver() -> float | None:
        return await worker.run_due()

    commands = MailCommands(
        store=store,
        outbox=outbox,
        health=health,
        audit=audit,
        room_name=room_name,
        xdm=room_to_mail,
        mailbox=m.address,
        admins=frozenset(config.bot.admins),
    )
    return MailParts(
        store,
        outbox,
        commands,
        health=health,
        subscribers=[room_to_mail, receipts],
        relay=relay,
        inbox=watcher,
        notices=notices,
        jobs=[
            Job("mail_outbox", deliver, interval_seconds=30, first_delay_seconds=0),
            Job(
                "mail_inbox",
                watcher.round,
                interval_seconds=m.poll_seconds,
                retry_seconds=5,
                first_delay_seconds=0,
            ),
            Job(
                "mail_probe",
                _none(probe),
                interval_seconds=60,  # a recovered relay shows within a minute
                retry_seconds=60,
                first_delay_seconds=0,
            ),
        ],
    )


def _none(fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[float | None]]:
    async def run() -> float | None:
        await fn()
        return None

    return run
