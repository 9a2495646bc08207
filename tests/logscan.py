"""Pytest plugin: no message the tests send may appear in any log of the run.

Loaded by tests/conftest.py for every run, whole or partial. It

1. captures every log record of the test process, from the first hook to the last, at
   DEBUG (the root logger is held at DEBUG before each test), into
   ``<basetemp>/logscan/records.log``. The records pass through the same filters as
   SantéGuard's own handler (``bridge.ops.log.log_filters``), on a copy, so the file is
   what production would write at DEBUG, and other handlers (``caplog``) see the records
   unchanged. As in production (``setup_logging``), the loggers that only dump data at
   DEBUG (``LIBRARY_DUMP_LOGGERS``: SQL statements with their parameters, whole
   responses) are kept at INFO: building those records for the whole suite slows it
   down enough to change timings; the filter drops them anyway, which
   tests/ops/test_event_content_filter.py checks.
2. records every message text the tests send as a Matrix user, by wrapping the senders
   from the test side: ``SimpleClient.request``, ``LocalSynapse.request`` and nio's
   ``AsyncClient.room_send`` (which ``NioPeer`` uses), plus the texts the demo
   (a subprocess) sends, read from its source. Product code has no hook for this.
3. at the end of the session (``pytest_sessionfinish``, which also runs after ``-x``, an
   interruption or a partial run) searches the captured file, every SantéGuard log file
   under the basetemp (the demo's ``santeguard.log``) and every dev Synapse's
   ``homeserver.log`` (the gate module runs inside Synapse) for each text — as written,
   as JSON or a repr escapes it, and as UTF-8 bytes escaped in a ``bytes`` repr — and
   fails the run (exit status 1, a report in the terminal summary) if one is found.

Texts shorter than ``MIN_TEXT_LEN`` are not searched (``"marker"`` would match words of
the log itself), nor texts the product itself ships: one found inside a template of its
translation catalogs (a command such as ``!sg mail``, which an alert names as a hint)
is SantéGuard's wording, not something a user typed.
``!sg`` commands are searched like any text: a command is logged by name, never with its
arguments (bot/dispatcher.py).
"""

from __future__ import annotations

import ast
import copy
import functools
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge.ops.log import LIBRARY_DUMP_LOGGERS, log_filters

MIN_TEXT_LEN = 8
CAPTURE_DIR = "logscan"
CAPTURE_FILE = "records.log"
PRODUCT_LOG_NAMES = ("santeguard.log", "homeserver.log")
DEMO_SOURCE = Path(__file__).resolve().parent.parent / "bridge" / "devtools" / "demo.py"
_SEND_METHODS = frozenset(("send_text", "send_notice"))
_TEXT_KEYS = ("body", "formatted_body")


class SentTexts:
    """The message texts the tests sent during this run (test side only)."""

    def __init__(self) -> None:
        self._texts: set[str] = set()

    def add(self, text: object) -> None:
        if isinstance(text, str) and len(text.strip()) >= MIN_TEXT_LEN:
            self._texts.add(text)

    def add_content(self, content: object) -> None:
        """The texts of an event content (``body``, ``formatted_body``)."""
        if isinstance(content, dict):
            for key in _TEXT_KEYS:
                self.add(content.get(key))

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._texts))

    def __len__(self) -> int:
        return len(self._texts)

    def __contains__(self, text: object) -> bool:
        return text in self._texts


SENT = SentTexts()


def demo_texts(source: Path = DEMO_SOURCE) -> list[str]:
    """The literal texts the demo sends (``x.send_text(room, "…")``), read from its source."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _SEND_METHODS
        ):
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append(arg.value)
    return found


# -- what to look for, and where -------------------------------------------------------


def forms(text: str) -> set[str]:
    """Every way ``text`` (or one of its lines) can be written into a log line."""
    pieces = {text}
    pieces.update(line for line in text.splitlines() if len(line.strip()) >= MIN_TEXT_LEN)
    out: set[str] = set()
    for piece in pieces:
        out.add(piece)
        out.add(json.dumps(piece)[1:-1])  # JSON, ASCII-escaped
        out.add(json.dumps(piece, ensure_ascii=False)[1:-1])  # JSON, as is
        out.add(repr(piece)[1:-1])  # a Python repr
        out.add(repr(piece.encode("utf-8"))[2:-1])  # a bytes repr (raw bodies in SQL)
    return {f for f in out if f}


def product_wording() -> list[str]:
    """Every template of SantéGuard's translation catalogs, in every language."""
    from bridge.app.wiring import build_translator

    return [text for catalog in build_translator().catalogs.values() for text in catalog.values()]


def user_texts(texts: Iterable[str], wording: Iterable[str]) -> list[str]:
    """The sent texts that are not part of the product's own wording."""
    shipped = list(wording)
    return [t for t in texts if not any(t in w for w in shipped)]


@dataclass(frozen=True)
class Leak:
    text: str
    path: Path
    line_no: int
    line: str

    def describe(self, limit: int = 200) -> str:
        line = self.line if len(self.line) <= limit else self.line[:limit] + "…"
        return f"{self.text!r} in {self.path}:{self.line_no}\n    {line}"


def search(texts: Iterable[str], where: Path, content: str) -> list[Leak]:
    """One ``Leak`` per text sent by the tests that appears in ``content``."""
    leaks: list[Leak] = []
    for text in texts:
        hits = [i for i in (content.find(n) for n in forms(text)) if i >= 0]
        if not hits:
            continue
        at = min(hits)
        start = content.rfind("\n", 0, at) + 1
        end = content.find("\n", at)
        line = content[start : end if end >= 0 else len(content)]
        leaks.append(Leak(text, where, content.count("\n", 0, at) + 1, line))
    return leaks


def find_leaks(texts: Iterable[str], paths: Iterable[Path]) -> list[Leak]:
    """One ``Leak`` per (text, file) where a text sent by the tests appears."""
    texts = list(texts)
    leaks: list[Leak] = []
    for path in paths:
        try:
            content = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue  # a test removed its own log (the demo without --keep)
        leaks += search(texts, path, content)
    return leaks


def log_files(basetemp: Path) -> list[Path]:
    """Every SantéGuard or dev Synapse log file of this run."""
    paths: list[Path] = []
    for name in PRODUCT_LOG_NAMES:
        paths += sorted(p for p in basetemp.rglob(name) if p.is_file())
    return paths


# -- capture ----------------------------------------------------------------------------


class CaptureHandler(logging.Handler):
    """Writes each record as SantéGuard's handler would (same filters), on a copy."""

    def __init__(self, path: Path) -> None:
        super().__init__(logging.NOTSET)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Read back through this handle: the file is still there if another pytest run
        # of the same user rotated the basetemp away meanwhile.
        self._stream = path.open("w+", encoding="utf-8")
        self._product_filters = log_filters(())
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def handle(self, record: logging.LogRecord) -> bool:
        record = copy.copy(record)  # the filters rewrite records; others must not see it
        for product_filter in self._product_filters:
            if not product_filter.filter(record):
                return False
        self.acquire()
        try:
            self.emit(record)
        finally:
            self.release()
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._stream.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)

    def read_all(self) -> str:
        """Everything captured so far."""
        self.acquire()
        try:
            self._stream.flush()
            self._stream.seek(0)
            content = self._stream.read()
            self._stream.seek(0, 2)
        finally:
            self.release()
        return content

    def flush(self) -> None:
        if not self._stream.closed:
            self._stream.flush()

    def close(self) -> None:
        if not self._stream.closed:
            self._stream.close()
        super().close()


# -- wrapping the senders ---------------------------------------------------------------


def _record_request(original: Any) -> Any:
    """``request(method, path, body)`` / ``request(method, path, json=…)``: record a
    message content sent with it."""

    @functools.wraps(original)
    async def wrapper(self: Any, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        body = args[0] if args else kwargs.get("body", kwargs.get("json"))
        if "/send/" in path:
            SENT.add_content(body)
        return await original(self, method, path, *args, **kwargs)

    return wrapper


def _record_room_send(original: Any) -> Any:
    """nio's ``room_send(room_id, message_type, content, …)``: record the content."""

    @functools.wraps(original)
    async def wrapper(
        self: Any, room_id: str, message_type: str, content: Any, *args: Any, **kwargs: Any
    ) -> Any:
        SENT.add_content(content)
        return await original(self, room_id, message_type, content, *args, **kwargs)

    return wrapper


def _wrap_senders(mp: pytest.MonkeyPatch) -> None:
    from nio import AsyncClient

    from bridge.devtools.client import SimpleClient
    from bridge.devtools.synapse.process import LocalSynapse

    mp.setattr(SimpleClient, "request", _record_request(SimpleClient.request))
    mp.setattr(LocalSynapse, "request", _record_request(LocalSynapse.request))
    mp.setattr(AsyncClient, "room_send", _record_room_send(AsyncClient.room_send))


# -- hooks ------------------------------------------------------------------------------


class LogScan:
    """The plugin's state for one session (registered as ``logscan``)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.handler: CaptureHandler | None = None
        self.leaks: list[Leak] = []
        self.problems: list[str] = []  # the scan could not be trusted
        self.scanned: list[Path] = []
        self._mp = pytest.MonkeyPatch()
        self._old_levels = {
            name: logging.getLogger(name).level for name in ("", *LIBRARY_DUMP_LOGGERS)
        }

    def start(self) -> None:
        basetemp = self.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
        self.handler = CaptureHandler(basetemp / CAPTURE_DIR / CAPTURE_FILE)
        root = logging.getLogger()
        root.addHandler(self.handler)
        root.setLevel(logging.DEBUG)
        for name in LIBRARY_DUMP_LOGGERS:
            logging.getLogger(name).setLevel(logging.INFO)
        _wrap_senders(self._mp)
        for text in demo_texts():
            SENT.add(text)

    def stop(self) -> None:
        self._mp.undo()
        if self.handler is not None:
            logging.getLogger().removeHandler(self.handler)
            self.handler.close()
        for name, level in self._old_levels.items():
            logging.getLogger(name).setLevel(level)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # A test (setup_logging("INFO"), caplog) may have raised the root level.
        logging.getLogger().setLevel(logging.DEBUG)

    @pytest.hookimpl(trylast=True)  # after the runner's teardown of session fixtures
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.handler is None:
            return
        basetemp = self.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
        self.scanned = [self.handler.path, *log_files(basetemp)]
        texts = user_texts(SENT, product_wording())
        self.leaks = search(texts, self.handler.path, self.handler.read_all())
        self.leaks += find_leaks(texts, self.scanned[1:])
        if self.handler not in logging.getLogger().handlers:
            self.problems.append("the capture handler was removed from the root logger")
        if (self.leaks or self.problems) and session.exitstatus in (
            pytest.ExitCode.OK,
            pytest.ExitCode.NO_TESTS_COLLECTED,
        ):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.handler is None:
            return
        for problem in self.problems:
            terminalreporter.write_line(f"logscan: {problem}; the run fails", red=True)
        if not self.leaks:
            if self.config.get_verbosity() >= 0:
                terminalreporter.write_line(
                    f"logscan: {len(SENT)} sent texts, none in "
                    f"{len(self.scanned)} log file(s) ({self.handler.path})"
                )
            return
        terminalreporter.section("message texts found in logs (patient data leak)", red=True)
        for leak in self.leaks:
            terminalreporter.write_line(leak.describe())
        terminalreporter.write_line(
            f"{len(self.leaks)} leak(s): the run fails. All records: {self.handler.path}"
        )


@pytest.hookimpl(trylast=True)  # after the tmpdir plugin set up the basetemp factory
def pytest_configure(config: pytest.Config) -> None:
    if config.option.collectonly or hasattr(config, "workerinput"):
        return  # nothing runs (or an xdist worker: not supported, nothing to scan)
    scan = LogScan(config)
    config.pluginmanager.register(scan, "logscan")
    scan.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    scan = config.pluginmanager.get_plugin("logscan")
    if isinstance(scan, LogScan):
        scan.stop()
        config.pluginmanager.unregister(scan)
