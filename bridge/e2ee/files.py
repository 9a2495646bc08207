"""Owner-only files for key material: the store directory is 0700, every file 0600.

Writes go through a temporary file and a rename, so a crash never leaves half a key file
(losing the cross-signing keys would mean a new identity that every client distrusts).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` if needed and make it 0700 (the keys below it are the bot's identity)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, created 0600 from the start."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    path.chmod(0o600)


def write_private_json(path: Path, value: Any) -> None:
    write_private(path, json.dumps(value, indent=2, sort_keys=True).encode("utf-8"))


def read_json(path: Path) -> Any:
    """The decoded file, or None if it does not exist."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None


def restrict_tree(path: Path) -> None:
    """Make every file below ``path`` 0600 (files that libraries created with the umask)."""
    for child in path.iterdir():
        if child.is_file() and stat.S_IMODE(child.stat().st_mode) != 0o600:
            child.chmod(0o600)
