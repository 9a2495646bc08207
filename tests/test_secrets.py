"""Secrets never reach logs or error texts."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import aiohttp
import pytest
import yaml

from bridge.app import SanteGuard
from bridge.config import ConfigError, load_config
from bridge.ops.log import SecretScrubber, setup_logging
from tests.helpers import AS_TOKEN, GATE_TOKEN, HS_TOKEN, make_config, message_event

SECRETS = (AS_TOKEN, HS_TOKEN, GATE_TOKEN)


async def test_logs_never_contain_configured_tokens(db_uri: str) -> None:
    cfg = make_config(db_uri, logging={"level": "DEBUG"})
    stream = io.StringIO()
    handler = setup_logging("DEBUG", "text", cfg.secrets(), stream=stream)
    app = SanteGuard(cfg)
    try:
        await app.start()
        base = cfg.appservice.address
        async with aiohttp.ClientSession() as s:
            # legacy query token (would appear in an access log), wrong tokens, a valid txn
            await s.put(
                f"{base}/_matrix/app/v1/transactions/a?access_token={HS_TOKEN}",
                json={"events": [message_event("!r:x", 1)]},
            )
            await s.put(
                f"{base}/_matrix/app/v1/transactions/b",
                headers={"Authorization": f"Bearer {HS_TOKEN}x"},
                json={"events": []},
            )
            await s.post(
                f"{base}{cfg.antispam.path}/ping",
                headers={"Authorization": f"Bearer {GATE_TOKEN}"},
                json={"id": "1"},
            )
        # The bot's registration against an unreachable homeserver logs failures with
        # the request it tried (which carries the as_token).
        logging.getLogger("santeguard.test").error("leak attempt %s and %s", AS_TOKEN, HS_TOKEN)
        logging.getLogger("santeguard.test").info(
            "url http://hs/_matrix/client/v3/register?access_token=%s", "abcdefgh12345"
        )
        assert app.dispatcher is not None
        await app.dispatcher.wait_idle()
    finally:
        await app.stop()
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    assert "leak attempt *** and ***" in text  # the scrubber did run on this output
    assert "access_token=***" in text
    for secret in SECRETS:
        assert secret not in text


def test_scrubber_masks_bearer_and_exceptions() -> None:
    scrub = SecretScrubber([HS_TOKEN])
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "header Bearer %s", ("zzzzzzzzzz",), None
    )
    try:
        raise RuntimeError(f"failed with {HS_TOKEN}")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    scrub.filter(record)
    assert record.getMessage() == "header Bearer ***"
    assert record.exc_text is not None
    assert HS_TOKEN not in record.exc_text


def test_config_errors_do_not_echo_secrets(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "homeserver": {"address": "ftp://nope", "domain": "x"},
                "appservice": {
                    "address": "http://a",
                    "as_token": AS_TOKEN,
                    "hs_token": 12345678,
                    "port": 99999,
                },
            }
        )
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "homeserver.address: Value error, must start with http:// or https://" in message
    assert "appservice.port" in message
    assert AS_TOKEN not in message
    assert "12345678" not in message


def test_secretstr_never_prints(db_uri: str = "sqlite:///x.db") -> None:
    cfg = make_config(db_uri)
    assert AS_TOKEN not in repr(cfg) and AS_TOKEN not in str(cfg.model_dump())
