"""Logging setup: text or JSON lines, with event content and every configured secret scrubbed.

Two filters sit on the handler, so no record — ours, aiohttp's access log with a legacy
``?access_token=`` query, or a library's — can print a token or a message:

- ``EventContentFilter`` keeps events to their ID, type and room. Patient data travels in
  event content, and several libraries log content when something goes wrong (see the
  class docstring for each source and why it is rewritten rather than silenced).
- ``SecretScrubber`` replaces configured secrets and token-shaped fragments.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from types import FrameType
from typing import Any, TextIO

_TOKEN_QUERY = re.compile(r"(access_token|as_token|hs_token|token)=([^&\s\"']+)", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)([A-Za-z0-9._~+/=-]{6,})")
REDACTED = "***"
CONTENT_DROPPED = "<content dropped>"

# Libraries' messages that embed an event, a response or a validation error's instance.
_VALIDATION_PREFIXES = (
    "Error validating event",  # nio.events.misc: the whole event (jsonschema error text)
    "Error validating response",  # nio.responses: the offending value of a response
    "Error validating decrypted Olm event",  # nio.crypto: a to-device payload (room keys)
)
_JSONSCHEMA_DETAIL = "\n\nFailed validating "  # str(jsonschema.ValidationError), however logged
_DESERIALIZE = "Failed to deserialize"  # mautrix: the raw event or data that did not parse
_NIO_RESPONSE_DUMP = "Validating response schema"  # nio.responses DEBUG: the whole response
# SQL drivers that log every statement with its parameters at DEBUG.
_STATEMENT_LOGGERS = frozenset(("aiosqlite", "peewee"))
_NIO_H2_DUMPS = ("Making Http2 request", "Handling Http2 event")  # nio.http DEBUG/INFO bodies

# What may be kept of an event: identifiers only, checked against their Matrix shapes.
_SAFE = {
    "event_id": re.compile(r"\$[A-Za-z0-9._~:+/=-]{1,255}"),
    "type": re.compile(r"[A-Za-z0-9._-]{1,255}"),
    "room_id": re.compile(r"![A-Za-z0-9._~:=-]{1,255}"),
}
_QUOTED_FIELD = {
    key: re.compile(rf"""['"]{key}['"]\s*:\s*['"]({pattern.pattern})['"]""")
    for key, pattern in _SAFE.items()
}
_VALIDATOR = re.compile(r"Failed validating '(\w{1,40})'")
# A dict or JSON key whose value is event content (an object) or message text (a string,
# possibly split by pprint into adjacent literals, in parentheses or not, or cut short by a
# truncated message); also a dataclass/attrs repr's ``body='…'`` (nio and mautrix events).
_CONTENT_KEY = re.compile(r"""(['"])content\1\s*:\s*(?=\{)""")
_STRING = r"""(?:'(?:[^'\\]|\\.)*(?:'|\Z)|"(?:[^"\\]|\\.)*(?:"|\Z))"""
_TEXT_VALUE = re.compile(
    rf"""(?P<key>(['"])(?:body|formatted_body)\2\s*:\s*|\b(?:body|formatted_body)=)"""
    rf"""\(?\s*{_STRING}(?:\s*{_STRING})*(?:\s*\))?"""
)
_EVENT_KEYS = frozenset(("content", "event_id", "room_id", "sender"))
_FRAMES_UP = 4  # from the frame that logged, how far to look for the event being handled
# A traceback's line for a jsonschema error, "<class>: <message>": the message, then the
# schema and the instance follow.
_VALIDATION_ERROR_LINE = re.compile(r"^[\w.]*(ValidationError|SchemaError): ")


def _end_of_object(text: str, start: int) -> int:
    """Index just past the ``{…}`` opening at ``start`` (strings skipped), or len(text)."""
    depth = 0
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c in "'\"":
            i += 1
            while i < n and text[i] != c:
                i += 2 if text[i] == "\\" else 1
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n  # unbalanced (truncated): drop everything after the key


def drop_event_content(text: str) -> str:
    """``text`` with every event ``content`` object and message ``body`` value replaced.

    Works on Python reprs (``pprint`` included) and JSON alike: what is left of an event
    is its other fields (ID, type, room, sender, timestamps).
    """
    if "content" not in text and "body" not in text:
        return text
    out: list[str] = []
    pos = 0
    for match in _CONTENT_KEY.finditer(text):
        if match.start() < pos:
            continue  # inside an object already dropped
        out.append(text[pos : match.end()])
        out.append(repr(CONTENT_DROPPED))
        pos = _end_of_object(text, match.end())
    out.append(text[pos:])
    return _TEXT_VALUE.sub(lambda m: f"{m.group('key')}{REDACTED!r}", "".join(out))


def _from_frames(record: logging.LogRecord) -> dict[str, str]:
    """Event ID, type and room read from the event the logging code was handling.

    Only works when the filter runs in the logging call (not behind a queue); the frame
    that logged the record is found by its file and function, then it and its callers
    are searched for a dict event (``parsed_dict``) or an event object (``event``).
    """
    found: dict[str, str] = {}
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and not (
        frame.f_code.co_name == record.funcName and frame.f_code.co_filename == record.pathname
    ):
        frame = frame.f_back
    for _ in range(_FRAMES_UP):
        if frame is None:
            break
        for value in frame.f_locals.values():
            if isinstance(value, dict):
                if "properties" in value or not _EVENT_KEYS.intersection(value):
                    continue  # a JSON schema, or not an event
                fields = value
            elif hasattr(value, "__dict__") and not isinstance(value, type):
                # an event object (nio's are dataclasses): its own attributes, no
                # properties evaluated; its ``type`` attribute is not the event type
                fields = {k: v for k, v in vars(value).items() if k != "type"}
            else:
                continue
            for key, pattern in _SAFE.items():
                field = fields.get(key)
                if key not in found and isinstance(field, str) and pattern.fullmatch(field):
                    found[key] = field
        frame = frame.f_back
    return found


def _event_ref(record: logging.LogRecord, text: str) -> str:
    """``event $id (type) in !room`` for what is known, from the frames or the text."""
    try:
        found = _from_frames(record)
    except Exception:  # never let a log call fail on this
        found = {}
    # In a jsonschema error text, only the instance (not the schema) is the event.
    instance = text[text.find("\nOn instance") :] if "\nOn instance" in text else text
    for key, regex in _QUOTED_FIELD.items():
        if key not in found and (m := regex.search(instance)):
            found[key] = m.group(1)
    parts = [f"event {found.get('event_id', '?')}"]
    if "type" in found:
        parts.append(f"({found['type']})")
    if "room_id" in found:
        parts.append(f"in {found['room_id']}")
    return " ".join(parts)


class EventContentFilter(logging.Filter):
    """Keep events in logs to their ID, type and room: no content, no message text.

    Sources found and how each is closed (records are rewritten, not dropped, so the
    operator still sees that something happened and to which event):

    - matrix-nio validates every event and response against a JSON schema and logs
      ``Error validating event: <jsonschema error>`` (``nio.events.misc``), whose text
      holds the failing value and often the whole event — including a *decrypted* message
      (the bot's device decrypts through nio). Same for ``Error validating response``
      (``nio.responses``) and ``Error validating decrypted Olm event`` (``nio.crypto``, a
      to-device payload that can carry room keys). Rewritten to the event's ID, type and
      room (read from the event nio was validating, or from the text) and the name of the
      failed check. A jsonschema error text logged any other way is rewritten the same way.
    - nio.responses logs every whole response at DEBUG (``Validating response schema``): a
      sync response holds every event. Dropped. nio.http logs HTTP/2 request and frame
      bodies (``Making Http2 request``, ``Handling Http2 event``): dropped.
    - aiosqlite logs every statement *with its parameters* at DEBUG: the stored
      transactions' raw bodies (every message) and everything else SantéGuard stores.
      peewee does the same for nio's crypto store (the device's pickled Olm and Megolm
      sessions). Dropped (and ``setup_logging`` sets both to INFO: no record is built).
    - mautrix's HTTP client logs each request *with its JSON body* at DEBUG (the bot's
      replies, which may quote what was typed); recognised by its ``matrix_http_request``
      extra and rewritten to method and URL.
    - mautrix's ``Failed to deserialize <data> …`` (attrs, sync, appservice handlers):
      rewritten to what failed, without the data.
    - Anything else, ours included, tracebacks included: every ``content`` object and every
      ``body``/``formatted_body`` string in a dict repr or JSON is replaced (an exception
      message that embeds an event cannot print it).

    Why a filter rather than raising those loggers' levels: the validation warnings are
    WARNING/ERROR records an operator needs (an event the bot could not parse), so a level
    high enough to hide them would hide the signal too; and a level only protects until a
    library adds a log line, whereas the catch-all above does not depend on wording.
    Levels are raised only where the DEBUG records are nothing but dumps: ``setup_logging``
    sets ``aiosqlite``, ``peewee`` and ``nio.responses`` to INFO, so those records (every
    statement, every response) are not even built; the filter drops them too, whatever
    the levels.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return self._filter(record)
        except Exception as e:  # fail closed: what could not be checked is not printed
            record.msg = "Log record withheld: it could not be checked for event content (%s)"
            record.args = (type(e).__name__,)
            record.exc_info = record.exc_text = None
            return True

    def _filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        if record.name.startswith("nio.responses") and msg.startswith(_NIO_RESPONSE_DUMP):
            return False
        if record.name.startswith("nio.http") and msg.startswith(_NIO_H2_DUMPS):
            return False
        if record.levelno < logging.INFO and record.name in _STATEMENT_LOGGERS:
            return False
        request: Any = getattr(record, "matrix_http_request", None)
        if isinstance(request, dict):
            self._rewrite_request(record, request)
            return True
        message = record.getMessage()
        new = message
        if message.startswith(_VALIDATION_PREFIXES) or _JSONSCHEMA_DETAIL in message:
            new = self._validation(record, message)
        elif message.startswith(_DESERIALIZE):
            new = self._deserialize(record, message)
        else:
            new = drop_event_content(message)
        if new is not message:
            record.msg = new
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._clean_traceback(record.exc_text)
        return True

    @staticmethod
    def _rewrite_request(record: logging.LogRecord, request: dict[str, Any]) -> None:
        record.msg = "req #%s: %s %s%s"
        record.args = (
            request.get("req_id"),
            request.get("method"),
            request.get("url"),
            f" {CONTENT_DROPPED}" if request.get("content") else "",
        )
        record.matrix_http_request = {**request, "content": None}

    @staticmethod
    def _validation(record: logging.LogRecord, message: str) -> str:
        head = message.split("\n", 1)[0]
        prefix = next((p for p in _VALIDATION_PREFIXES if head.startswith(p)), "")
        if prefix:  # keep what follows the prefix up to ": " (nio: "from <sender>")
            prefix = head.split(": ", 1)[0] if ": " in head else prefix
        else:
            prefix = "Validation error"
        check = _VALIDATOR.search(message)
        failed = f"failed {check.group(1)!r} check" if check else "invalid"
        return f"{prefix} ({_event_ref(record, message)}): {failed}; {CONTENT_DROPPED}"

    @staticmethod
    def _deserialize(record: logging.LogRecord, message: str) -> str:
        into = re.search(r" into (\w{1,80})", message)
        what = f" into {into.group(1)}" if into else ""
        return f"{_DESERIALIZE} ({_event_ref(record, message)}){what}; {CONTENT_DROPPED}"

    @staticmethod
    def _clean_traceback(text: str) -> str:
        if "ValidationError" in text:  # a jsonschema error's text quotes the instance
            lines: list[str] = []
            skipping = False
            for line in text.split("\n"):
                if _VALIDATION_ERROR_LINE.match(line):
                    skipping = True  # its message, schema and instance follow
                    lines.append(f"{line.split(':', 1)[0]}: {CONTENT_DROPPED}")
                    continue
                if skipping and not line.startswith(("Traceback", "During handling", "The above")):
                    continue
                skipping = False
                lines.append(line)
            text = "\n".join(lines)
        return drop_event_content(text)


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


LIBRARY_DUMP_LOGGERS = ("aiosqlite", "peewee", "nio.responses", "aioimaplib", "mail.log")
"""Loggers whose DEBUG records only dump data (``setup_logging`` keeps them at INFO)."""


def log_filters(secrets: Iterable[str]) -> list[logging.Filter]:
    """The filters every SantéGuard log handler carries, in order (content, then secrets)."""
    return [EventContentFilter(), SecretScrubber(secrets)]


def setup_logging(
    level: str, fmt: str, secrets: Iterable[str], stream: TextIO | None = None
) -> logging.Handler:
    """Install one scrubbing handler on the root logger and return it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    for f in log_filters(secrets):
        handler.addFilter(f)
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
    # Their DEBUG records are dumps (every SQL statement with its parameters, every whole
    # response); EventContentFilter drops them anyway, this avoids building them.
    for name in LIBRARY_DUMP_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.getLogger().level, logging.INFO))
    return handler
