"""Checks against the running homeserver: is the enforcement user a server admin?

Every admin API SantéGuard's retention audit and purges use needs a server admin; the
enforcement user is called through the appservice token (``?user_id=`` masquerading),
exactly as the audit calls them. The token is sent in a header and never printed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from bridge.homeserver_check.model import Finding, Severity, State, not_checked, ok, to_fix

ID = "enforcer_admin"
CRIT = Severity.CRITICAL


@dataclass(frozen=True)
class LiveTarget:
    address: str  # homeserver.address: the client-server API base URL
    enforcer: str  # @<appservice.enforcer_username>:<homeserver.domain>
    as_token: str = field(repr=False)
    verify_ssl: bool = True


def admin_path(enforcer: str) -> str:
    return f"/_synapse/admin/v1/users/{quote(enforcer, safe='@:')}/admin"


def _fix_params(target: LiveTarget) -> dict[str, str]:
    return {
        "url": target.address.rstrip("/") + admin_path(target.enforcer),
        "user": target.enforcer,
    }


def classify(status: int, body: Any, target: LiveTarget) -> Finding:
    """The finding for the homeserver's answer to ``GET …/users/<enforcer>/admin``."""
    error = str(body.get("error", "")) if isinstance(body, dict) else ""
    if status == 200 and isinstance(body, dict) and body.get("admin") is True:
        return ok(ID)
    if status == 200 and isinstance(body, dict) and body.get("admin") is False:
        problem = "hscheck.hint.enforcer_not_admin"
    elif status == 403 and "not registered" in error:
        problem = "hscheck.hint.enforcer_unregistered"
    elif status == 403:
        problem = "hscheck.hint.enforcer_not_admin"
    elif status == 401:
        return to_fix(
            ID,
            CRIT,
            "hscheck.hint.as_token_refused",
            params={"status": str(status)},
            fix="hscheck.fix.as_token_refused",
        )
    else:
        return not_checked(ID, CRIT, "hscheck.hint.admin_api_status", status=str(status))
    return to_fix(
        ID,
        CRIT,
        problem,
        params={"user": target.enforcer},
        fix="hscheck.fix.enforcer_admin",
        fix_params=_fix_params(target),
    )


async def enforcer_admin(target: LiveTarget, timeout: float = 10.0) -> Finding:
    url = target.address.rstrip("/") + admin_path(target.enforcer)
    headers = {"Authorization": f"Bearer {target.as_token}"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(
                url,
                params={"user_id": target.enforcer},
                headers=headers,
                ssl=True if target.verify_ssl else False,
            ) as resp,
        ):
            raw = await resp.text()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        return not_checked(
            ID, CRIT, "hscheck.hint.unreachable", address=target.address, error=type(e).__name__
        )
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = None
    return classify(status, body, target)


def skipped(problem: str) -> Finding:
    """The finding when the live check does not run (no -c, or --no-live)."""
    return Finding(ID, CRIT, State.NOT_CHECKED, problem)
