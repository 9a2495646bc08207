"""Notices a new Annuaire Santé extract import (done by the CLI) and asks for a re-check."""

from __future__ import annotations

import logging
from collections.abc import Callable

from mautrix.util.async_db import Database

from bridge.identity.sources.extract import current_import_id

log = logging.getLogger("santeguard.directory")


class ImportWatch:
    """A scheduled job: when the current import changes, ``on_new_import`` is called."""

    def __init__(self, db: Database, on_new_import: Callable[[], None]) -> None:
        self._db = db
        self._on_new = on_new_import
        self._seen: int | None = None

    async def poll(self) -> None:
        current = await current_import_id(self._db)
        if current is None:
            return
        if self._seen is not None and current != self._seen:
            log.info("New directory import %s: re-verifying every practitioner", current)
            self._on_new()
        self._seen = current
