"""A real mail service (aiosmtpd relay + Dovecot, certificates made now) beside a real
Synapse and SantéGuard with the mail bridge on, once per database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bridge.devtools.maillab import MailLab
from bridge.devtools.stack import DevStack
from tests.conftest import _started_stack


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
async def mail_stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_database: str | None,
) -> AsyncIterator[tuple[DevStack, MailLab]]:
    """A protected network (rooms protected and encrypted) with the mail bridge on, and
    its own mail service (each database gets an empty mailbox)."""
    kind = request.param
    mail_lab = MailLab(tmp_path_factory.mktemp(f"maillab-{kind}"))
    await mail_lab.start()
    try:
        dev = await _started_stack(
            kind, "mailstack", tmp_path_factory, pg_database, mail=mail_lab.mail_config()
        )
        try:
            yield dev, mail_lab
        finally:
            await dev.stop()
    finally:
        await mail_lab.stop()
