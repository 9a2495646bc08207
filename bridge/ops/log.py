"""Logging setup: text or JSON lines, with every configured secret scrubbed.

The scrubbing filter sits on the handler, so no record — ours, aiohttp's access log
with a legacy ``?access_token=`` query, or a library's — can print a token.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import TextIO

_TOKEN_QUERY = re.compile(r"(access_token|as_token|hs_token|token)=([^&\s\"']+)", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)([A-Za-z0-9._~+/=-]{6,})")
REDACTED = "***"


class SecretScrubber(logging.Filter):
    """Replace known secret values and token-looking fragments in every record."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for s in self._secrets:
            if s in text:
                text = text.replace(s, REDACTED)
        text = _TOKEN_QUERY.sub(rf"\1={REDACTED}", text)
        return _BEARER.sub(rf"\1{REDACTED}", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = self.scrub(message)
        record.args = None
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message (+ exception)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


def setup_logging(
    level: str, fmt: str, secrets: Iterable[str], stream: TextIO | None = None
) -> logging.Handler:
    """Install one scrubbing handler on the root logger and return it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(SecretScrubber(secrets))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_santeguard", False):
            root.removeHandler(h)
    handler._santeguard = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel("WARNING" if level != "DEBUG" else "DEBUG")
    return handler
