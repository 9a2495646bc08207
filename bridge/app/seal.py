"""The audit log's seal in the running service: the sealer, its jobs, its last checkpoint.

The sealer is made at start, not at construction: loading (or generating) the signing
key is I/O. Its jobs exist from construction (the scheduler starts after the sealer).
"""

from __future__ import annotations

import logging

from mautrix.util.async_db import Database

from bot.i18n import Translator
from bridge.audit.keys import load_signing_key
from bridge.audit.log import AuditLog
from bridge.audit.sealer import AuditSealer
from bridge.config import Config
from bridge.core.ports import NoticePort
from bridge.ops.scheduler import Job

log = logging.getLogger("santeguard")


class Seal:
    def __init__(
        self,
        config: Config,
        db: Database,
        audit: AuditLog,
        matrix: NoticePort,
        translator: Translator,
    ) -> None:
        self._config = config
        self._db = db
        self._audit = audit
        self._matrix = matrix
        self._translator = translator
        self.sealer: AuditSealer | None = None

    def start(self) -> AuditSealer:
        cfg = self._config
        self.sealer = AuditSealer(
            self._db,
            self._audit,
            load_signing_key(cfg.audit, create=True),
            cfg.audit.checkpoint_file,
            post=self._post if cfg.gate.admin_room else None,
            translator=self._translator,
            lang=cfg.bot.language,
        )
        return self.sealer

    async def _post(self, text: str) -> object:
        """A checkpoint is posted in the admin room: out of the database owner's reach."""
        room = self._config.gate.admin_room
        if room is None:
            return None
        return await self._matrix.send_notice(room, text)

    def jobs(self) -> list[Job]:
        """Signed checkpoints and pruning (the leader runs them)."""
        cfg = self._config.audit

        async def checkpoint() -> None:
            assert self.sealer is not None
            await self.sealer.checkpoint()

        async def prune() -> None:
            assert self.sealer is not None
            await self.sealer.prune(cfg.keep_days)

        return [
            Job(
                "audit_checkpoint",
                checkpoint,
                interval_seconds=cfg.checkpoint_minutes * 60,
                retry_seconds=300,
                first_delay_seconds=0,
            ),
            Job("audit_prune", prune, interval_seconds=86400, first_delay_seconds=600),
        ]

    async def at_stop(self) -> None:
        """What was recorded up to the stop is sealed (by the leader)."""
        if self.sealer is None:
            return
        try:
            await self.sealer.checkpoint()
        except Exception as e:
            log.warning("Could not seal the audit log at stop: %s", type(e).__name__)
