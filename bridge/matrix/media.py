"""The homeserver's media repository, as the appservice: download with a byte cap, upload.

Mail attachments cross here in both directions. Downloads use authenticated media
(``/_matrix/client/v1/media/download``) and fall back to the legacy
``/_matrix/media/v3/download`` only when the homeserver does not know the new endpoint.
Bodies are read in chunks against a cap, so a huge file never sits in memory. Outages
(5xx, 429, connection failures, timeouts) raise ``TransientError`` so the caller's work
is retried; refusals raise a ``MediaError`` whose ``reason`` is a short code.

``mxc://`` URIs come from events other people send: they are validated strictly (server
name grammar, media ID charset) before any request, so none can steer the request path.
The appservice token travels only in the ``Authorization`` header, never in URLs or logs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import aiohttp

from bridge.core.errors import TransientError

_CHUNK = 64 * 1024
_ERROR_BODY_LIMIT = 64 * 1024

# Matrix spec, appendices "Server name": hostname [":" port]; hostname is an IPv4 address,
# a bracketed IPv6 address or a DNS name. DNS labels are required to be non-empty so that
# no "." or ".." segment can reach the request path.
_DNS_NAME = r"(?:[A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}"
_IPV6 = r"\[[0-9A-Fa-f:.]{2,45}\]"
_SERVER_NAME = re.compile(rf"(?:{_IPV6}|{_DNS_NAME})(?::[0-9]{{1,5}})?")
# Spec, content repository: media IDs are opaque but only ever [A-Za-z0-9_-].
_MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
# type/subtype with optional parameters, printable ASCII only (no CR/LF reaches a header).
_MIME_PART = r"[A-Za-z0-9!#$&^_.+-]{1,127}"
_CONTENT_TYPE = re.compile(rf"{_MIME_PART}/{_MIME_PART}(?:;[ -~]{{0,512}})?")


class MediaError(Exception):
    """The homeserver refused a media request, or the request was invalid (no retry helps).

    ``reason`` is a code: "invalid_mxc", "not_found", "too_large", "refused",
    "unexpected_status", "bad_response". ``status``/``errcode`` are the homeserver's.
    """

    def __init__(
        self, reason: str, *, status: int | None = None, errcode: str | None = None
    ) -> None:
        super().__init__(f"{reason} (status {status}, errcode {errcode})")
        self.reason = reason
        self.status = status
        self.errcode = errcode


class MediaNotFound(MediaError):
    def __init__(self, *, status: int | None = 404, errcode: str | None = None) -> None:
        super().__init__("not_found", status=status, errcode=errcode)


class MediaTooLarge(MediaError):
    """Bigger than the caller's cap (download) or the homeserver's limit (upload, 413)."""

    def __init__(
        self, *, limit: int | None = None, status: int | None = None, errcode: str | None = None
    ) -> None:
        super().__init__("too_large", status=status, errcode=errcode)
        self.limit = limit


class InvalidMxc(MediaError):
    def __init__(self) -> None:
        super().__init__("invalid_mxc")


@dataclass(frozen=True, slots=True)
class Mxc:
    server_name: str
    media_id: str

    def __str__(self) -> str:
        return f"mxc://{self.server_name}/{self.media_id}"


def parse_mxc(uri: object) -> Mxc:
    """Split ``mxc://<server-name>/<media-id>``; ``InvalidMxc`` unless both are well formed."""
    if not isinstance(uri, str) or not uri.startswith("mxc://"):
        raise InvalidMxc()
    server_name, sep, media_id = uri[len("mxc://") :].partition("/")
    if (
        not sep
        or len(server_name) > 255
        or _SERVER_NAME.fullmatch(server_name) is None
        or _MEDIA_ID.fullmatch(media_id) is None
    ):
        raise InvalidMxc()
    return Mxc(server_name, media_id)


def _is_transient(status: int) -> bool:
    return status >= 500 or status == 429


class MediaClient:
    """Media requests with the appservice token (``upload(user_id=…)`` masquerades)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        homeserver: str,
        as_token: str,
        *,
        timeout: float = 120.0,
    ) -> None:
        self._session = session
        self._base = homeserver.rstrip("/")
        self._headers = {"Authorization": f"Bearer {as_token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 15.0))

    def __repr__(self) -> str:
        return f"MediaClient({self._base!r})"  # never the token

    async def download(self, mxc: str, *, max_bytes: int) -> bytes:
        """The media's bytes; ``MediaTooLarge`` past ``max_bytes``, ``MediaNotFound`` if gone."""
        ref = parse_mxc(mxc)
        tail = f"/download/{ref.server_name}/{ref.media_id}"
        try:
            return await self._download(f"/_matrix/client/v1/media{tail}", max_bytes)
        except MediaNotFound as e:
            if e.errcode != "M_UNRECOGNIZED":
                raise
        # A homeserver without authenticated media (before spec v1.11).
        return await self._download(f"/_matrix/media/v3{tail}", max_bytes)

    async def _download(self, path: str, max_bytes: int) -> bytes:
        try:
            async with self._session.get(
                self._base + path,
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,  # never carry the token to another host
            ) as resp:
                if resp.status != 200:
                    await self._raise_for(resp)
                if resp.content_length is not None and resp.content_length > max_bytes:
                    raise MediaTooLarge(limit=max_bytes, status=resp.status)
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise MediaTooLarge(limit=max_bytes, status=resp.status)
                    chunks.append(chunk)
                return b"".join(chunks)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as e:
            raise TransientError(f"homeserver unreachable during media download ({path})") from e

    async def upload(
        self, data: bytes, content_type: str, filename: str, *, user_id: str | None = None
    ) -> str:
        """Store ``data``; return its ``mxc://`` URI. ``user_id``: the uploading ghost."""
        params = {"filename": filename}
        if user_id is not None:
            params["user_id"] = user_id
        if _CONTENT_TYPE.fullmatch(content_type) is None:
            content_type = "application/octet-stream"  # never a header we did not vet
        headers = {**self._headers, "Content-Type": content_type}
        try:
            async with self._session.post(
                self._base + "/_matrix/media/v3/upload",
                params=params,
                data=data,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                if resp.status != 200:
                    await self._raise_for(resp)
                body = await _json_body(resp)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as e:
            raise TransientError("homeserver unreachable during media upload") from e
        try:
            return str(parse_mxc(body.get("content_uri")))
        except InvalidMxc:
            raise MediaError("bad_response", status=200) from None

    async def _raise_for(self, resp: aiohttp.ClientResponse) -> None:
        """Map a non-200 answer to ``TransientError`` or a ``MediaError``."""
        status = resp.status
        if _is_transient(status):
            raise TransientError(f"homeserver answered {status} to a media request")
        errcode = (await _json_body(resp)).get("errcode")
        code = errcode if isinstance(errcode, str) else None
        if status == 404:
            raise MediaNotFound(errcode=code)
        if status == 413 or code == "M_TOO_LARGE":
            raise MediaTooLarge(status=status, errcode=code)
        if status in (401, 403):
            raise MediaError("refused", status=status, errcode=code)
        raise MediaError("unexpected_status", status=status, errcode=code)


async def _json_body(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """The answer's JSON object, read up to a small cap (an error body is never media)."""
    raw = b""
    async for chunk in resp.content.iter_chunked(_CHUNK):
        raw += chunk
        if len(raw) > _ERROR_BODY_LIMIT:
            return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
