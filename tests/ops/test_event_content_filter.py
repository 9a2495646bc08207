"""No event content in logs: bridge/ops/log.py's EventContentFilter on the real sources.

Each leaking library path is driven for real (nio's event validation, decrypted events
included, mautrix's request log and deserialisation, aiosqlite's statement log) into a
handler built by ``setup_logging``; the output keeps the event's ID, type and room and
never the message text.
"""

from __future__ import annotations

import io
import json
import logging
import pprint
import sys
from collections.abc import Iterator
from typing import Any

import aiosqlite
import jsonschema
import pytest
from mautrix.api import HTTPAPI, Method
from mautrix.errors import MatrixConnectionError
from nio import MegolmEvent
from nio.events.room_events import Event, RoomMessage

from bridge.ops.log import (
    CONTENT_DROPPED,
    LIBRARY_DUMP_LOGGERS,
    EventContentFilter,
    SecretScrubber,
    drop_event_content,
    setup_logging,
)

SECRET = "Mme Dupont, biopsie : carcinome"


def message(body: Any = SECRET, **fields: Any) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": "$ev1:sante.example",
        "room_id": "!ward:sante.example",
        "sender": "@doc:sante.example",
        "origin_server_ts": 1,
        "content": {"msgtype": "m.text", "body": body, "formatted_body": f"<b>{SECRET}</b>"},
        **fields,
    }


@pytest.fixture
def logs(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """Everything logged during the test, through SantéGuard's own handler (DEBUG, JSON
    lines for ``@pytest.mark.parametrize("fmt", ...)`` users, text otherwise)."""
    fmt = getattr(request, "param", "text")
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    saved = {name: logging.getLogger(name).level for name in LIBRARY_DUMP_LOGGERS}
    handler = setup_logging("DEBUG", fmt, ["hs-secret-token"], stream=stream)
    # Check the filter, not the levels: let the libraries' DEBUG dumps through.
    for name in LIBRARY_DUMP_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for name, old in saved.items():
            logging.getLogger(name).setLevel(old)


def assert_clean(text: str) -> None:
    assert SECRET not in text
    assert "Dupont" not in text


# -- the reported leak: nio's "Error validating event" --------------------------------


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(message(body=5), id="body-wrong-type"),
        pytest.param(message(content={"body": SECRET}), id="msgtype-missing"),
        pytest.param(message(origin_server_ts="x"), id="top-level-field-wrong"),
    ],
)
def test_nio_validation_error_keeps_id_type_room_only(
    logs: io.StringIO, event: dict[str, Any]
) -> None:
    try:
        Event.parse_event(event)
    except TypeError:
        pass  # nio's BadEvent cannot take a string timestamp; the warning came first
    text = logs.getvalue()
    assert "Error validating event (event $ev1:sante.example (m.room.message) in " in text
    assert "!ward:sante.example" in text
    assert "check; <content dropped>" in text
    assert_clean(text)


def test_nio_validation_of_a_decrypted_event(logs: io.StringIO) -> None:
    """The path that leaked: the bot's device decrypts through nio, which validates the
    clear event (body included) and logs it when it does not match its schema."""
    clear = message(body=["not", "a", "string", SECRET])
    RoomMessage.parse_decrypted_event(clear)
    text = logs.getvalue()
    assert "Error validating event (event $ev1:sante.example (m.room.message)" in text
    assert_clean(text)


def test_nio_encrypted_event_validation(logs: io.StringIO) -> None:
    event = message(type="m.room.encrypted", content={"algorithm": 5, "ciphertext": SECRET})
    MegolmEvent.from_dict(event)
    text = logs.getvalue()
    assert "event $ev1:sante.example (m.room.encrypted) in !ward:sante.example" in text
    assert_clean(text)


def test_jsonschema_error_logged_any_other_way(logs: io.StringIO) -> None:
    log = logging.getLogger("nio.crypto.log")
    try:
        jsonschema.validate({"body": SECRET}, {"properties": {"body": {"type": "integer"}}})
    except jsonschema.ValidationError as e:
        log.warning(e)  # as nio does on key import
        log.error(f"Error validating decrypted Olm event from @doc:sante.example: {e.message}")
        log.exception("validation failed")
    text = logs.getvalue()
    assert "Validation error (event ?): failed 'type' check; <content dropped>" in text
    assert "Error validating decrypted Olm event from @doc:sante.example (event ?)" in text
    assert f"jsonschema.exceptions.ValidationError: {CONTENT_DROPPED}" in text
    assert_clean(text)


def test_nio_response_dump_dropped(logs: io.StringIO) -> None:
    logging.getLogger("nio.responses").debug(
        "Validating response schema %r: %s", {"type": "object"}, {"rooms": message()}
    )
    assert "Validating response schema" not in logs.getvalue()


# -- mautrix, aiosqlite -----------------------------------------------------------------


async def test_mautrix_request_log_without_body(logs: io.StringIO) -> None:
    api = HTTPAPI("http://127.0.0.1:9", token="t", log=logging.getLogger("santeguard.matrix.as"))
    try:
        with pytest.raises(MatrixConnectionError):
            await api.request(
                Method.PUT,
                "/_matrix/client/v3/rooms/!ward:sante.example/send/m.room.message/1",
                message()["content"],
                retry_count=0,
            )
    finally:
        await api.session.close()
    text = logs.getvalue()
    assert "req #" in text and "PUT http://127.0.0.1:9/_matrix/client/v3/rooms/" in text
    assert CONTENT_DROPPED in text
    assert_clean(text)


def test_mautrix_deserialization_failure(logs: io.StringIO) -> None:
    logging.getLogger("mau.attrs").debug("Failed to deserialize %s into %s", message(), "Event")
    text = logs.getvalue()
    assert "Failed to deserialize (event $ev1:sante.example (m.room.message)" in text
    assert "into Event" in text
    assert_clean(text)


async def test_aiosqlite_statements_with_parameters_dropped(logs: io.StringIO) -> None:
    async with aiosqlite.connect(":memory:") as db:
        await db.execute("CREATE TABLE txn (body BLOB)")
        await db.execute("INSERT INTO txn VALUES (?)", (json.dumps(message()).encode(),))
    assert_clean(logs.getvalue())


def test_peewee_statements_of_the_crypto_store_dropped(logs: io.StringIO) -> None:
    """nio's store logs each statement with its parameters (pickled sessions)."""
    import peewee

    db = peewee.SqliteDatabase(":memory:")
    db.connect()
    db.execute_sql("CREATE TABLE s (session BLOB)")
    db.execute_sql("INSERT INTO s VALUES (?)", (SECRET.encode(),))
    db.close()
    assert_clean(logs.getvalue())


# -- the catch-all, ours included -------------------------------------------------------


@pytest.mark.parametrize("logs", ["text", "json"], indirect=True)
def test_events_in_any_message_or_traceback(logs: io.StringIO) -> None:
    log = logging.getLogger("santeguard.test")
    log.warning("handled %s", message())
    log.warning("as JSON %s", json.dumps(message(body=f'{SECRET} "quoted" {{braces}}')))
    log.warning("content alone %r", message()["content"])
    log.warning("pretty %s", pprint.pformat({"body": SECRET * 3}, width=30))
    log.warning("object %r", Event.parse_event(message()))
    try:
        raise ValueError(f"could not handle {message()}")
    except ValueError:
        log.exception("handler failed for %s", "$ev1:sante.example")
    text = logs.getvalue()
    assert "'event_id': '$ev1:sante.example'" in text  # identifiers stay
    assert "ValueError: could not handle" in text
    assert_clean(text)


def test_drop_event_content_keeps_the_rest() -> None:
    assert drop_event_content("nothing to see") == "nothing to see"
    assert drop_event_content(
        "{'type': 'm.room.topic', 'content': {'topic': 'x {y} \\'z'}, 'state_key': ''}"
    ) == ("{'type': 'm.room.topic', 'content': '<content dropped>', 'state_key': ''}")
    assert drop_event_content('{"content": {"a": "truncat') == "{\"content\": '<content dropped>'"
    assert drop_event_content("body='abc' body=\"d\"") == "body='***' body='***'"


def test_a_record_that_cannot_be_checked_is_withheld() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "%d %s", (SECRET,), None)
    assert EventContentFilter().filter(record)
    assert "withheld" in record.getMessage()
    assert_clean(record.getMessage())


def test_setup_logging_installs_both_filters_and_quiets_the_dumps() -> None:
    root = logging.getLogger()
    level = root.level
    saved = {name: logging.getLogger(name).level for name in LIBRARY_DUMP_LOGGERS}
    handler = setup_logging("DEBUG", "text", [], stream=io.StringIO())
    try:
        kinds = [type(f) for f in handler.filters]
        assert kinds == [EventContentFilter, SecretScrubber]
        for name in LIBRARY_DUMP_LOGGERS:
            assert logging.getLogger(name).level == logging.INFO
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for name, old in saved.items():
            logging.getLogger(name).setLevel(old)


def test_the_filter_finds_the_event_being_validated_only_in_the_logging_call() -> None:
    """Read from the frames of the logging code: a record handled later (a queue) falls
    back to what the text says, here nothing."""
    record = logging.LogRecord(
        "nio.events.misc", logging.WARNING, "elsewhere.py", 1, "Error validating event: x", (), None
    )
    record.funcName = sys._getframe().f_code.co_name
    assert EventContentFilter().filter(record)
    assert record.getMessage() == "Error validating event (event ?): invalid; <content dropped>"
