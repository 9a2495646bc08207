"""The suite-wide log scan (tests/logscan.py) can fail, and fails the run.

The scan itself runs at the end of every session; these tests prove its parts work: the
search finds a planted text however it was written, the capture and the sender wrappers
are live in this session, and a run whose logs hold a sent text exits with status 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from nio import AsyncClient

from bridge.devtools.client import SimpleClient
from tests import logscan

REPO = Path(__file__).resolve().parent.parent


# -- the search -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        pytest.param("INFO x: got Patient P, résultats 12", id="as-is"),
        pytest.param('{"body": "Patient P, r\\u00e9sultats 12"}', id="json-ascii"),
        pytest.param('executing (b\'{"body": "Patient P, r\\xc3\\xa9sultats 12"}\',)', id="bytes"),
        pytest.param("second line only: Patient P, résultats 12", id="one-line-of-several"),
    ],
)
def test_scanner_finds_a_planted_text(tmp_path: Path, written: str) -> None:
    text = "Patient P, résultats 12\nsuite du compte rendu"
    log = tmp_path / "santeguard.log"
    log.write_text(f"first line\n{written}\nlast line\n", encoding="utf-8")
    [leak] = logscan.find_leaks([text], [log])
    assert (leak.text, leak.path, leak.line_no, leak.line) == (text, log, 2, written)
    assert "Patient P" in leak.describe()


def test_scanner_reports_nothing_when_absent(tmp_path: Path) -> None:
    log = tmp_path / "records.log"
    log.write_text("Error validating event (event $e:x (m.room.message)): <content dropped>\n")
    assert logscan.find_leaks(["Patient P, résultats 12"], [log, tmp_path / "gone.log"]) == []


def test_short_texts_are_not_searched() -> None:
    sent = logscan.SentTexts()
    sent.add("marker")
    sent.add("  checked  ")
    sent.add(None)
    sent.add_content({"msgtype": "m.text", "body": "!sg ping", "formatted_body": "<p>x</p>"})
    assert list(sent) == ["!sg ping", "<p>x</p>"]


def test_the_product_own_wording_is_not_searched() -> None:
    """An alert names ``!sg mail quarantine`` as a hint: a test that sent ``!sg mail``
    did not leak it. A patient's words inside a command are still searched."""
    wording = logscan.product_wording()
    assert any("!sg mail" in w for w in wording)
    sent = ["!sg mail", "!sg mail link Mme Dupont, diabète"]
    assert logscan.user_texts(sent, wording) == ["!sg mail link Mme Dupont, diabète"]


def test_log_files_include_product_logs_under_basetemp(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "santeguard.log").write_text("")
    (tmp_path / "stack-sqlite0" / "synapse").mkdir(parents=True)
    (tmp_path / "stack-sqlite0" / "synapse" / "homeserver.log").write_text("")
    (tmp_path / "other.log").write_text("")
    assert logscan.log_files(tmp_path) == [
        tmp_path / "demo" / "santeguard.log",
        tmp_path / "stack-sqlite0" / "synapse" / "homeserver.log",
    ]


def test_demo_texts_are_read_from_its_source() -> None:
    texts = logscan.demo_texts()
    assert "Patient X : résultats de la biopsie" in texts
    assert all(t in logscan.SENT for t in texts if len(t) >= logscan.MIN_TEXT_LEN)


# -- live in this session ---------------------------------------------------------------


def _capture(request: pytest.FixtureRequest) -> logscan.CaptureHandler:
    scan = request.config.pluginmanager.get_plugin("logscan")
    assert isinstance(scan, logscan.LogScan) and scan.handler is not None
    return scan.handler


def test_capture_takes_every_record_through_the_product_filters(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    handler = _capture(request)
    marker = "logscan-capture-7f3a"
    logging.getLogger("santeguard.anything").debug("debug record %s", marker)
    logging.getLogger("nio.events.misc").warning(
        "Error validating event: {'event_id': '$m:x', 'content': {'body': '%s-body'}}", marker
    )
    captured = handler.read_all()
    assert f"DEBUG santeguard.anything: debug record {marker}" in captured
    assert "Error validating event (event $m:x): invalid; <content dropped>" in captured
    assert f"{marker}-body" not in captured
    # The capture filtered a copy: other handlers (caplog here) got the record as logged.
    assert f"{marker}-body" in caplog.text


async def test_senders_are_recorded() -> None:
    text = "logscan: texte envoyé par SimpleClient 41"
    client = SimpleClient("http://127.0.0.1:9", "@a:x", "token")
    try:
        with pytest.raises(OSError):
            await client.send_text("!r:x", text)
    finally:
        await client.close()
    assert text in logscan.SENT

    nio_text = "logscan: texte envoyé par nio 42"
    nio_client = AsyncClient("http://127.0.0.1:9", "@a:x")
    try:
        # Nothing listens there; what matters is that the text was recorded first.
        with contextlib.suppress(Exception):
            await nio_client.room_send("!r:x", "m.room.message", {"body": nio_text})
    finally:
        await nio_client.close()
    assert nio_text in logscan.SENT


# -- the whole mechanism: a run whose logs hold a sent text fails -----------------------

PLANTED_RUN = """
import logging

from tests.logscan import SENT


def test_sends_and_logs() -> None:
    text = "Patient Planté : biopsie 2024"
    SENT.add(text)  # as the wrappers do when a test sends it
    logging.getLogger("santeguard.demo").{call}
"""


@pytest.mark.parametrize(
    ("call", "status"),
    [
        pytest.param('info("received %s", text)', 1, id="leak-fails-the-run"),
        pytest.param('info("received %s", "$event:x")', 0, id="clean-run-passes"),
        pytest.param('debug("handled %s", {"content": {"body": text}})', 0, id="filtered"),
    ],
)
def test_a_run_with_a_leak_fails(tmp_path: Path, call: str, status: int) -> None:
    (tmp_path / "test_planted.py").write_text(PLANTED_RUN.replace("{call}", call))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            *(
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "tests.logscan",
                "-p",
                "no:cacheprovider",
            ),
            *("--basetemp", str(tmp_path / "inner"), "--rootdir", str(tmp_path)),
            str(tmp_path / "test_planted.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = textwrap.indent(proc.stdout + proc.stderr, "  ")
    assert proc.returncode == status, out
    assert "1 passed" in proc.stdout, out
    if status:
        assert "message texts found in logs" in proc.stdout, out
        assert "'Patient Planté : biopsie 2024' in " in proc.stdout, out
        assert "records.log:" in proc.stdout, out
