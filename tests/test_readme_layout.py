"""The README's layout table matches the tree: every listed path exists, every folder is listed."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _listed() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    return {m.rstrip("/") for m in re.findall(r"^\| `([^`]+)` \|", section, re.M)}


def test_every_listed_path_exists() -> None:
    listed = _listed()
    assert len(listed) > 10, "layout table not found"
    assert sorted(p for p in listed if not (ROOT / p).exists()) == []


def test_every_bridge_folder_and_top_level_folder_is_listed() -> None:
    listed = _listed()
    folders = {
        f"bridge/{p.name}"
        for p in (ROOT / "bridge").iterdir()
        if p.is_dir() and not p.name.startswith(("_", "."))
    }
    top = {"bridge", "bot", "config", "tests", "bench", "docs", "helm"}
    missing = sorted(f for f in folders if f not in listed)
    assert missing == []
    assert sorted(t for t in top - {"bridge"} if t not in listed) == []
