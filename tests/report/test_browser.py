"""The report in a real browser: headless Chromium (Debian's) renders the file; the
rendered DOM holds every room and the chart, and a screenshot is kept as an artefact."""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bridge.report.render import render_html
from tests.report.sample import report, rooms, translator

CHROMIUM = os.environ.get("SANTEGUARD_CHROMIUM", "/usr/bin/chromium")
REQUIRE = os.environ.get("SANTEGUARD_REQUIRE_CHROMIUM") == "1"


def _chromium() -> str:
    path = shutil.which(CHROMIUM) or (CHROMIUM if os.access(CHROMIUM, os.X_OK) else None)
    if path is None:
        if REQUIRE:
            pytest.fail(f"Chromium required but not found at {CHROMIUM} (apt-get install chromium)")
        pytest.skip(
            "Chromium not installed (apt-get install chromium; set "
            "SANTEGUARD_REQUIRE_CHROMIUM=1 to fail instead)"
        )
    return path


async def _run(*args: str, home: Path) -> bytes:
    """Run Chromium headless; its own profile and home under the test's directory."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(home)},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out


def _flags(profile: Path) -> list[str]:
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize("language", ["fr", "en"])
async def test_chromium_renders_every_room_and_the_chart(language: str, tmp_path: Path) -> None:
    chromium = _chromium()
    page = tmp_path / f"report-{language}.html"
    page.write_text(render_html(report(language), translator()), encoding="utf-8")
    url = page.resolve().as_uri()

    dom = await _run(chromium, *_flags(tmp_path / "p1"), "--dump-dom", url, home=tmp_path)
    parsed = _Dom()
    parsed.feed(dom.decode("utf-8"))
    shown = {a.get("data-room-id") for t, a in parsed.tags if t == "tr"} - {None}
    assert shown == {r.room_id for r in rooms()}
    assert any(t == "svg" and a.get("id") == "decisions-chart" for t, a in parsed.tags)
    assert sum(1 for t, a in parsed.tags if t == "rect" and a.get("class") == "bar") > 100
    assert not any(t == "script" for t, _ in parsed.tags)  # the hostile name stayed text

    shot = tmp_path / f"report-{language}.png"
    await _run(
        chromium,
        *_flags(tmp_path / "p2"),
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        url,
        home=tmp_path,
    )
    data = shot.read_bytes()
    assert _png_size(data) == (1280, 2000)
    assert len(data) > 50_000  # a rendered page, not a blank one
    print(f"report screenshot: {shot}")
