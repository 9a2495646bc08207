"""The few client-server calls the encrypted device makes itself (nio has no API for them).

Outages map to ``TransientError`` (the dispatcher retries), refusals to ``CryptoError``.
Tokens go in the Authorization header only, never in URLs or logs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp

from bridge.core.errors import TransientError
from bridge.e2ee.errors import CryptoError


class HomeserverApi:
    def __init__(self, session: aiohttp.ClientSession, homeserver: str) -> None:
        self._session = session
        self._base = homeserver.rstrip("/") + "/_matrix/client/v3"

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str,
        json: Any = None,
        params: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, dict[str, Any]]:
        """Send one request; return (status, JSON body) when ``status`` is in ``ok``."""
        try:
            async with self._session.request(
                method,
                self._base + path,
                json=json,
                params=params,
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=30),
            ) as resp:
                body = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientConnectionError, TimeoutError) as e:
            raise TransientError(f"homeserver unreachable during {method} {path}") from e
        except ValueError as e:  # not JSON: a proxy's error page
            raise TransientError(f"homeserver sent no JSON for {method} {path}") from e
        data: dict[str, Any] = body if isinstance(body, dict) else {}
        if status in ok:
            return status, data
        if status >= 500 or status == 429:
            raise TransientError(f"homeserver answered {status} to {method} {path}")
        errcode = data.get("errcode")
        raise CryptoError(
            f"{method} {path} -> {status} {errcode}: {data.get('error')}",
            status=status,
            errcode=errcode if isinstance(errcode, str) else None,
        )


def q(value: str) -> str:
    """Percent-encode one path segment (room IDs, event types)."""
    return quote(value, safe="")
