"""Throwaway SantéGuard configurations for tests and benchmarks.

Both need the same loopback config with fixed tokens, and bench/ may not import tests/,
so the builder lives here, in the development tooling, for both to import.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Any

from bridge.config import Config
from bridge.devtools.secretlog import register_config

__all__ = ["AS_TOKEN", "GATE_TOKEN", "HS_TOKEN", "free_port", "make_config"]

# Fixed, so a test or benchmark can sign its requests without reading the config back.
AS_TOKEN = "as-token-3c1f0c5e9b7d4a21"  # noqa: S105
HS_TOKEN = "hs-token-8e2d7f6a1b9c4e53"  # noqa: S105
GATE_TOKEN = "gate-token-5a7e9c1d3f2b4e68"  # noqa: S105


def free_port() -> int:
    """A loopback port free right now (another process may still take it before us)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_config(db_uri: str, homeserver: str = "http://127.0.0.1:9", **sections: Any) -> Config:
    """A config listening on a free loopback port with the tokens above.

    Each keyword names a config section whose keys it updates, e.g.
    ``make_config(uri, gate={"protect_by_default": True})``.
    """
    port = free_port()
    data: dict[str, Any] = {
        "homeserver": {"address": homeserver, "domain": "santeguard.test"},
        "appservice": {
            "address": f"http://127.0.0.1:{port}",
            "hostname": "127.0.0.1",
            "port": port,
            "as_token": AS_TOKEN,
            "hs_token": HS_TOKEN,
            "max_body_bytes": 256 * 1024,
        },
        "antispam": {"token": GATE_TOKEN},
        "database": {"uri": db_uri},
        "dispatch": {"retry_base_seconds": 0.01, "max_attempts": 3},
        "bot": {"admins": ["@admin:santeguard.test"]},
        # Intake, dispatch and load tests send clear messages from unverified users.
        "gate": {"protect_by_default": False},
        # One process per test: no leader to wait out.
        "cluster": {"takeover_grace_seconds": 0},
    }
    # The audit log's key and checkpoints: never in the working directory.
    sealed = Path(tempfile.mkdtemp(prefix="santeguard-audit-"))
    data["audit"] = {
        "key_file": str(sealed / "audit.key"),
        "checkpoint_file": str(sealed / "checkpoints.jsonl"),
    }
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    cfg = Config(**data)
    register_config(cfg)  # for the test suite's log scan (tests/secretscan.py)
    return cfg
