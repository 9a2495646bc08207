"""Annuaire Santé FHIR API client (``gateway.api.esante.gouv.fr``), as a DirectoryLookup.

Live lookups complement the daily extract: a practitioner registered this morning, or
struck off, is seen at once. The API is a remote dependency on the verification path,
so the client is defensive: bounded retries with backoff on transient failures only,
a per-instance TTL cache (found and not-found answers), responses read with a size
cap, and every malformed answer turned into :class:`FhirError` (a
:class:`DirectoryUnavailable`) whose message never contains the API key.

Turning the resources into a :class:`Practitioner` is :mod:`.mapping`'s job.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from bridge.identity.identifiers import PractitionerId, parse_identifier
from bridge.identity.model import DirectoryUnavailable, Practitioner, fold, profession_codes
from bridge.identity.sources.fhir.mapping import (
    IDNPS_SYSTEM,
    RPPS_SYSTEMS,
    _dicts,
    _in_city,
    _matching_practitioner,
    _practitioner_id,
    _text,
    _to_practitioner,
)

log = logging.getLogger("santeguard.directory.fhir")

_JSON_TYPES = ("application/fhir+json", "application/json")
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_MAX_SEARCH = 20  # each hit costs one more request (its roles)
_MAX_ERROR_DETAIL = 200

_Cached = Practitioner | None | list[Practitioner]


class FhirError(DirectoryUnavailable):
    """The FHIR API did not give a usable answer; ``reason`` is a short stable label."""

    def __init__(self, reason: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"Annuaire Santé FHIR API: {detail}")
        self.reason = reason
        self.status = status


class _Transient(Exception):
    """A failure worth retrying (5xx, 429, timeout, connection)."""

    def __init__(self, reason: str, detail: str, status: int | None, retry_after: float) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


class FhirDirectory:
    """Annuaire Santé FHIR R4 client implementing ``DirectoryLookup``."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 10.0,
        retries: int = 2,
        cache_ttl_s: float = 3600.0,
        max_body_bytes: int = 4_000_000,
        backoff_s: float = 0.5,
        max_cache_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._api_key = api_key
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._retries = max(0, retries)
        self._ttl = cache_ttl_s
        self._max_body = max_body_bytes
        self._backoff = backoff_s
        self._max_cache = max_cache_entries
        self._clock = clock
        self._cache: dict[tuple[str, ...], tuple[float, _Cached]] = {}
        self.requests_sent = 0  # every HTTP attempt, retries included (tests, metrics)
        self.retries_done = 0

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> FhirDirectory:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # -- cache -------------------------------------------------------------------

    def _cache_get(self, key: tuple[str, ...]) -> tuple[bool, _Cached]:
        hit = self._cache.get(key)
        if hit is None:
            return False, None
        expires, value = hit
        if self._clock() >= expires:
            del self._cache[key]
            return False, None
        return True, value

    def _cache_put(self, key: tuple[str, ...], value: _Cached) -> None:
        if self._ttl <= 0:
            return
        self._cache.pop(key, None)
        while len(self._cache) >= self._max_cache:
            del self._cache[next(iter(self._cache))]  # oldest insertion first
        self._cache[key] = (self._clock() + self._ttl, value)

    # -- HTTP --------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text[:_MAX_ERROR_DETAIL]

    def _error(self, reason: str, detail: str, status: int | None = None) -> FhirError:
        return FhirError(reason, self._redact(detail), status)

    async def _bundle(self, resource: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        """GET a search Bundle, retrying transient failures with exponential backoff."""
        attempt = 0
        while True:
            try:
                return await self._get_once(resource, params)
            except _Transient as e:
                if attempt >= self._retries:
                    raise self._error(
                        e.reason, f"{e.detail} (after {attempt + 1} attempts)", e.status
                    ) from None
                delay = max(self._backoff * 2**attempt, e.retry_after)
                log.info("FHIR %s: %s, retrying in %.2f s", resource, e.detail, delay)
                await asyncio.sleep(delay)
                attempt += 1
                self.retries_done += 1

    async def _get_once(self, resource: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self.requests_sent += 1
        headers = {
            "ESANTE-API-KEY": self._api_key,
            "Accept": "application/fhir+json",
            "User-Agent": "SanteGuard",
        }
        try:
            async with self._session.get(
                f"{self._base}/{resource}",
                params=params,
                headers=headers,
                timeout=self._timeout,
                # The key header must never follow a redirect to another host.
                allow_redirects=False,
            ) as resp:
                status = resp.status
                if status == 429 or status >= 500:
                    retry_after = _retry_after(resp.headers.get("Retry-After"))
                    raise _Transient(f"http_{status}", f"HTTP {status}", status, retry_after)
                if 300 <= status < 400:
                    raise self._error("redirect", f"unexpected redirect (HTTP {status})", status)
                if status in (401, 403):
                    raise self._error("auth", f"API key refused (HTTP {status})", status)
                if status >= 400:
                    raise self._error(f"http_{status}", f"HTTP {status} on {resource}", status)
                if resp.content_type not in _JSON_TYPES:
                    raise self._error(
                        "content_type",
                        f"unexpected content type {resp.content_type[:60]!r}",
                        status,
                    )
                length = resp.content_length
                if length is not None and length > self._max_body:
                    raise self._error("too_large", f"response of {length} bytes refused", status)
                body = await self._read_capped(resp.content)
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise _Transient("timeout", "request timed out", None, 0) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
            detail = f"connection failed ({type(e).__name__})"
            raise _Transient("connection", detail, None, 0) from None
        return self._parse_bundle(body)

    async def _read_capped(self, content: aiohttp.StreamReader) -> bytes:
        """Read at most ``max_body_bytes`` (after decompression), then give up."""
        chunks: list[bytes] = []
        total = 0
        async for chunk in content.iter_chunked(65536):
            total += len(chunk)
            if total > self._max_body:
                raise self._error("too_large", f"response over {self._max_body} bytes refused")
            chunks.append(chunk)
        return b"".join(chunks)

    def _parse_bundle(self, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise self._error("bad_json", "response is not valid JSON") from None
        if not isinstance(data, dict):
            raise self._error("not_bundle", "response is not a FHIR resource")
        kind = data.get("resourceType")
        if kind == "OperationOutcome":
            issues = _dicts(data.get("issue"))
            detail = _text(issues[0].get("diagnostics")) if issues else None
            raise self._error("operation_outcome", f"server error: {detail or 'no detail'}")
        if kind != "Bundle":
            raise self._error("not_bundle", f"expected a Bundle, got {str(kind)[:40]!r}")
        if "entry" in data and not isinstance(data["entry"], list):
            raise self._error("not_bundle", "Bundle.entry is not a list")
        return data

    # -- DirectoryLookup ---------------------------------------------------------

    async def lookup(self, idnps: str) -> Practitioner | None:
        pid = parse_identifier(idnps)
        key = ("lookup", pid.idnps)
        hit, value = self._cache_get(key)
        if hit:
            return value if isinstance(value, Practitioner) or value is None else None
        bundle = await self._bundle("Practitioner", [("identifier", f"{IDNPS_SYSTEM}|{pid.idnps}")])
        resource = _matching_practitioner(bundle, pid)
        if resource is None and pid.kind == "rpps":
            # Older records may carry only the RPPS identifier.
            bundle = await self._bundle(
                "Practitioner", [("identifier", f"{RPPS_SYSTEMS[0]}|{pid.value}")]
            )
            resource = _matching_practitioner(bundle, pid)
        practitioner = None
        if resource is not None:
            practitioner = await self._practitioner(pid, resource)
        self._cache_put(key, practitioner)
        return practitioner

    async def _roles(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        """The practitioner's roles and their organisations, or None if unknown."""
        rid = resource.get("id")
        if not isinstance(rid, str) or not _FHIR_ID.match(rid):
            return None
        return await self._bundle(
            "PractitionerRole",
            [("practitioner", rid), ("_include", "PractitionerRole:organization")],
        )

    async def _practitioner(self, pid: PractitionerId, resource: dict[str, Any]) -> Practitioner:
        active = resource.get("active") is not False
        roles = await self._roles(resource) if active else None
        return _to_practitioner(pid, resource, roles)

    async def search(
        self, name: str, profession: str | None, city: str | None, limit: int
    ) -> list[Practitioner]:
        """Active practitioners by name; profession and city are filtered client-side.

        Costs one request plus one per hit (its roles), so ``limit`` is capped at 20.
        """
        limit = max(0, min(limit, _MAX_SEARCH))
        words = fold(name)
        if not words or limit == 0:
            return []
        codes = profession_codes(profession) if profession is not None else None
        if codes == ():
            return []
        key = ("search", words, profession or "", fold(city or ""), str(limit))
        hit, value = self._cache_get(key)
        if hit and isinstance(value, list):
            return value
        count = limit if codes is None and city is None else min(50, limit * 5)
        bundle = await self._bundle(
            "Practitioner", [("name", name.strip()), ("active", "true"), ("_count", str(count))]
        )
        out: list[Practitioner] = []
        for entry in _dicts(bundle.get("entry")):
            resource = entry.get("resource")
            if not isinstance(resource, dict) or resource.get("resourceType") != "Practitioner":
                continue
            pid = _practitioner_id(resource)
            if pid is None:
                continue
            p = await self._practitioner(pid, resource)
            if codes is not None and p.profession_code not in codes:
                continue
            if city is not None and not _in_city(p, city):
                continue
            out.append(p)
            if len(out) >= limit:
                break
        self._cache_put(key, out)
        return out


def _retry_after(value: str | None) -> float:
    """Seconds from a numeric Retry-After header, capped: we do not wait for minutes."""
    try:
        return min(max(float(value or 0), 0.0), 30.0)
    except ValueError:
        return 0.0
