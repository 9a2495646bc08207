"""Pro Santé Connect: the IDNPS a Matrix user proved by logging in with their CPS/e-CPS.

When Synapse delegates login to Pro Santé Connect (OIDC), it records the PSC subject
as the user's external id. That is the strongest binding SantéGuard can get, stronger
than a number typed by an admin, so it is read from Synapse's admin API rather than
trusted from anything the user says. Synapse must map the PSC claim carrying the IDNPS
(e.g. ``subject_claim: preferred_username``) for the value to be an IDNPS.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import aiohttp

from bridge.identity.identifiers import IdentifierError, parse_identifier
from bridge.identity.model import DirectoryUnavailable


class PscError(DirectoryUnavailable):
    """Synapse did not answer usefully; ``reason`` is a short stable label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"Pro Santé Connect binding: {detail}")
        self.reason = reason


async def psc_idnps(
    session: aiohttp.ClientSession,
    homeserver_url: str,
    admin_token: str,
    user_id: str,
    idp_id: str = "psc",
    *,
    timeout_s: float = 10.0,
    max_body_bytes: int = 1_000_000,
) -> str | None:
    """The IDNPS bound to ``user_id`` by the ``idp_id`` login, or None if there is none.

    Reads ``GET /_synapse/admin/v2/users/{user_id}`` and its ``external_ids`` entry
    whose ``auth_provider`` is ``oidc-<idp_id>`` (Synapse's naming) or ``<idp_id>``.
    An unknown user has no binding (None). Raises :class:`PscError` when Synapse
    refuses the token, answers garbage, or the external id is not an RPPS/ADELI/IDNPS.
    """
    url = f"{homeserver_url.rstrip('/')}/_synapse/admin/v2/users/{quote(user_id, safe='')}"
    try:
        async with session.get(
            url,
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
        ) as resp:
            if resp.status == 404:
                return None
            if resp.status in (401, 403):
                raise PscError("auth", f"admin token refused by the homeserver ({resp.status})")
            if resp.status != 200:
                raise PscError(f"http_{resp.status}", f"HTTP {resp.status} from the admin API")
            body = await resp.content.read(max_body_bytes + 1)
            if len(body) > max_body_bytes:
                raise PscError("too_large", "admin API answer too large")
    except (TimeoutError, aiohttp.ClientError) as e:
        raise PscError("unreachable", f"homeserver unreachable ({type(e).__name__})") from None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise PscError("bad_json", "admin API answer is not JSON") from None
    entries = data.get("external_ids") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise PscError("bad_answer", "admin API answer has no external_ids list")
    providers = {idp_id, f"oidc-{idp_id}"}
    values = {
        e["external_id"].strip()
        for e in entries
        if isinstance(e, dict)
        and e.get("auth_provider") in providers
        and isinstance(e.get("external_id"), str)
    }
    if not values:
        return None
    try:
        idnps = {parse_identifier(v).idnps for v in values}
    except IdentifierError as e:
        raise PscError(
            "bad_external_id",
            f"the {idp_id} external id is not an RPPS/ADELI/IDNPS ({e.code}); "
            "check the OIDC subject claim mapping",
        ) from None
    if len(idnps) > 1:
        raise PscError("ambiguous", f"{len(idnps)} different {idp_id} identities for one user")
    return idnps.pop()
