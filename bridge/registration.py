"""The appservice registration file that Synapse reads (``app_service_config_files``)."""

from __future__ import annotations

import re
import secrets
from typing import Any


def generate_tokens() -> tuple[str, str]:
    """Return a fresh (as_token, hs_token) pair: 256 bits each, URL-safe."""
    return secrets.token_urlsafe(32), secrets.token_urlsafe(32)


def build_registration(
    *,
    service_id: str,
    url: str,
    domain: str,
    bot_username: str,
    as_token: str,
    hs_token: str,
    sender_localpart: str | None = None,
) -> dict[str, Any]:
    """Build the registration mapping.

    Users: exclusive namespace for the bot and its ``<bot>_*`` ghosts. Rooms: a
    non-exclusive ``.*`` namespace, so the homeserver sends SantéGuard every room's
    events (the gate's backstop needs to see joins everywhere). Ephemeral and to-device
    pushes (MSC2409/MSC3202) are switched on for the bot's encrypted device.
    """
    dom = re.escape(domain)
    bot = re.escape(bot_username)
    return {
        "id": service_id,
        "url": url,
        "as_token": as_token,
        "hs_token": hs_token,
        "sender_localpart": sender_localpart or f"{bot_username}_as_{secrets.token_hex(4)}",
        "rate_limited": False,
        "namespaces": {
            "users": [
                {"regex": f"@{bot}:{dom}", "exclusive": True},
                {"regex": f"@{bot}_.+:{dom}", "exclusive": True},
            ],
            "rooms": [{"regex": ".*", "exclusive": False}],
            "aliases": [],
        },
        "receive_ephemeral": True,
        "de.sorunome.msc2409.push_ephemeral": True,
        "org.matrix.msc3202": True,
    }
