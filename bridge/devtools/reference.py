"""Generate the reference docs from the code: ``python -m bridge.devtools.reference``.

Four files, rewritten when they differ from what the code says now:

- docs/configuration.md, docs/configuration.fr.md: every configuration key, from the
  settings model (`bridge.config.Config`) and the French catalog (`reference_fr`);
- docs/commands.md, docs/commands.fr.md: every `!sg` command, from the registry the
  bridge builds and the bot's translated help texts.

``--check`` writes nothing and exits 1, listing the stale files (for CI and the tests).
Exit status 2: the code and the reference's texts disagree (a key without description, a
French text missing or naming a key that no longer exists, a command in no group).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path

from pydantic_settings import BaseSettings

from bridge.config import Config
from bridge.devtools.reference_commands import app_registry, default_translator, render_commands
from bridge.devtools.reference_config import ReferenceGapError, render_config
from bridge.devtools.reference_md import GENERATOR

__all__ = ["FILES", "generate", "main", "stale_files"]

FILES = (
    "docs/configuration.md",
    "docs/configuration.fr.md",
    "docs/commands.md",
    "docs/commands.fr.md",
)
"""The generated files, relative to the repository's root."""

_SOURCE_ROOT = Path(__file__).resolve().parents[2]


async def generate(model: type[BaseSettings] = Config) -> dict[str, str]:
    """The content of every generated file, by path relative to the repository's root."""
    registry = await app_registry()
    translator = default_translator()
    return {
        "docs/configuration.md": render_config(model, "en"),
        "docs/configuration.fr.md": render_config(model, "fr"),
        "docs/commands.md": render_commands(registry, translator, "en"),
        "docs/commands.fr.md": render_commands(registry, translator, "fr"),
    }


def stale_files(root: Path, generated: Mapping[str, str]) -> list[str]:
    """The generated files that are missing under ``root`` or differ from ``generated``."""
    out = []
    for rel, text in generated.items():
        path = root / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out.append(rel)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog=GENERATOR, description="Generate docs/configuration*.md and docs/commands*.md."
    )
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    ap.add_argument(
        "--root",
        type=Path,
        default=_SOURCE_ROOT,
        help="repository root holding docs/ (default: the one this module is in)",
    )
    args = ap.parse_args(argv)
    root: Path = args.root
    if not (root / "docs").is_dir():
        print(f"{root} has no docs/ folder: give the repository with --root", file=sys.stderr)
        return 2
    try:
        generated = asyncio.run(generate())
    except ReferenceGapError as e:
        print(f"cannot generate the reference: {e}", file=sys.stderr)
        return 2
    stale = stale_files(root, generated)
    if args.check:
        if stale:
            print("stale generated docs (run `" + GENERATOR + "`):", file=sys.stderr)
            for rel in stale:
                print(f"  {rel}", file=sys.stderr)
            return 1
        print("generated docs are up to date")
        return 0
    for rel in stale:
        (root / rel).write_text(generated[rel], encoding="utf-8")
        print(f"wrote {rel}")
    if not stale:
        print("generated docs are up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
