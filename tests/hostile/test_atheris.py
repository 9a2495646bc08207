"""Coverage-guided fuzzing with atheris (libFuzzer) of the byte parsers.

Each target of tests/hostile/fuzz_atheris.py runs in its own process (libFuzzer owns the
process), from a seed corpus of valid inputs, with a fixed seed in short mode. The run
fails if a parser raises anything but its documented exception (libFuzzer reports an
uncaught exception and saves the input under the test's directory) or if the process's
RSS passes ``RSS_LIMIT_MB``. The number of inputs libFuzzer executed is counted.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.mail.mime import OutboundMail, build_outbound
from bridge.mail.xdm_build import build_xdm
from tests.hostile.budget import LONG, LONG_FACTOR, Tally

pytest.importorskip("atheris")

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
RUNS = 1000 * (LONG_FACTOR if LONG else 1)
RSS_LIMIT_MB = 1024
WHEN = datetime(2026, 1, 15, tzinfo=UTC)


def _seeds(target: str) -> list[bytes]:
    if target == "mime":
        mail = OutboundMail(
            from_addr="bot@sg.example.mssante.fr", from_name="Zoé", rpps=None,
            to_addr="dr@x.mssante.fr", reply_to=None, subject="Résultats", text="Bonjour\n",
            html="<p>Bonjour <b>x</b></p>", attachments=(), message_id="<a@sg.example.fr>",
            in_reply_to=None, references=(), date=WHEN, request_mdn=True,
        )  # fmt: skip
        return [build_outbound(mail), b"From: a@b.fr\r\nSubject: s\r\n\r\nhello\r\n"]
    if target == "xdm":
        files = [("cr.pdf", "application/pdf", b"%PDF-1.4\n" * 20)]
        return [build_xdm(files, title="t", author="Dr A B", when=WHEN, unique_id="2.25.1")]
    if target == "allowlist":
        return [(DATA / "mail" / "listeblanche-sample.xml").read_bytes()]
    if target == "extract":
        lines = (DATA / "PS_LibreAcces_Personne_activite_sample.txt").read_bytes().splitlines()
        return [b"\n".join(lines[:4]) + b"\n"]
    if target == "transaction":
        ev = {"type": "m.room.message", "event_id": "$e", "room_id": "!r:x", "sender": "@a:x",
              "content": {"body": "x"}}  # fmt: skip
        receipt = {"type": "m.receipt", "room_id": "!r:x",
                   "content": {"$e": {"m.read": {"@a:x": {"ts": 1}}}}}  # fmt: skip
        return [json.dumps({"events": [ev], "ephemeral": [receipt]}).encode()]
    body = {"inviter": "@a:x", "invitee": "@b:x", "room_id": "!r:x"}
    return [bytes([i]) + json.dumps(body).encode() for i in range(7)]


@pytest.mark.parametrize(
    "target", ["mime", "xdm", "allowlist", "extract", "transaction", "antispam"]
)
def test_atheris_target(target: str, tmp_path: Path, tally: Tally) -> None:
    tally.target = f"atheris_{target}"
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(_seeds(target)):
        (corpus / f"seed{i}").write_bytes(seed)
    args = [
        sys.executable, "-m", "tests.hostile.fuzz_atheris", target, str(corpus),
        f"-runs={RUNS}", f"-rss_limit_mb={RSS_LIMIT_MB}", "-max_len=32768", "-timeout=60",
        f"-artifact_prefix={tmp_path}/", "-print_final_stats=1",
    ]  # fmt: skip
    if not LONG:
        args.append("-seed=1")  # the same inputs every short run
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3600, check=False
    )
    output = done.stderr + done.stdout
    assert done.returncode == 0, output[-4000:]
    runs = re.search(r"Done (\d+) runs in", output)
    assert runs is not None, output[-2000:]
    tally.count("executed", int(runs.group(1)))
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    tally.peak_bytes = max(tally.peak_bytes, peak_kb * 1024)
