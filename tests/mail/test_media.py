"""The media client: strict mxc URIs, capped downloads, uploads, errors mapped to retries.

Error paths run against a small aiohttp server standing in for the homeserver; the
real behaviour (authenticated media, masquerading ghosts) against Synapse is in
``test_media_synapse.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.core.errors import TransientError
from bridge.devtools.testconfig import free_port
from bridge.matrix.media import (
    InvalidMxc,
    MediaClient,
    MediaError,
    MediaNotFound,
    MediaTooLarge,
    parse_mxc,
)

TOKEN = "as-token-secret-value"
V1 = "/_matrix/client/v1/media/download/{server}/{media_id}"
V3 = "/_matrix/media/v3/download/{server}/{media_id}"
UPLOAD = "/_matrix/media/v3/upload"


@dataclass
class FakeHomeserver:
    """Answers media requests as a test tells it to; records what it was asked."""

    v1: Any = None  # None: answer with the media; else a callable returning a response
    v3: Any = None
    upload: Any = None
    media: bytes = b"hello media"
    seen: list[web.Request] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_get(V1, self._v1)
        app.router.add_get(V3, self._v3)
        app.router.add_post(UPLOAD, self._upload)
        app.router.add_get("/elsewhere", self._elsewhere)
        return app

    async def _v1(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request)
        return await (self.v1 or self._serve)(request)

    async def _v3(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request)
        return await (self.v3 or self._serve)(request)

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request)
        self.bodies.append(await request.read())
        if self.upload is not None:
            result: web.StreamResponse = await self.upload(request)
            return result
        return web.json_response({"content_uri": "mxc://hs.test/NewMedia_1"})

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self.media, content_type="application/octet-stream")

    async def _elsewhere(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request)
        return web.Response(body=b"redirected")


def error(status: int, errcode: str) -> Any:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response({"errcode": errcode, "error": "x"}, status=status)

    return answer


@pytest.fixture
async def hs() -> AsyncIterator[tuple[FakeHomeserver, MediaClient]]:
    fake = FakeHomeserver()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield fake, MediaClient(session, str(server.make_url("")), TOKEN, timeout=2)
    await server.close()


# -- mxc URIs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "mxc://santeguard.test/AbC_123-x",
        "mxc://matrix.example.org:8448/abc",
        "mxc://127.0.0.1/abc",
        "mxc://[::1]:8448/abc",
        "mxc://localhost/a",
    ],
)
def test_valid_mxc(uri: str) -> None:
    assert str(parse_mxc(uri)) == uri


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "https://santeguard.test/abc",
        "mxc://santeguard.test",
        "mxc://santeguard.test/",
        "mxc:///abc",
        "mxc://../abc",
        "mxc://./abc",
        "mxc://a..b/abc",
        "mxc://.santeguard.test/abc",
        "mxc://santeguard.test/..",
        "mxc://santeguard.test/a/b",
        "mxc://santeguard.test/a/../../../_synapse/admin/v1/users",
        "mxc://santeguard.test/abc?access_token=x",
        "mxc://santeguard.test/abc#frag",
        "mxc://santeguard.test/ab%2Fc",
        "mxc://santeguard.test/abc\n",
        "mxc://santeguard.test/abc def",
        "mxc://santeguard.test/abé",
        "mxc://user@santeguard.test/abc",
        "mxc://santeguard.test:port/abc",
        "mxc://santeguard.test:123456/abc",
        "mxc://[::1/abc",
        "mxc://exa mple.org/abc",
        "MXC://santeguard.test/abc",
        "mxc://" + "a" * 256 + "/abc",
        "mxc://santeguard.test/" + "a" * 256,
    ],
)
async def test_invalid_mxc_is_refused_without_a_request(
    hs: tuple[FakeHomeserver, MediaClient], uri: str
) -> None:
    fake, media = hs
    with pytest.raises(InvalidMxc) as e:
        await media.download(uri, max_bytes=1000)
    assert e.value.reason == "invalid_mxc"
    assert fake.seen == []


def test_non_string_mxc() -> None:
    with pytest.raises(InvalidMxc):
        parse_mxc(None)


# -- downloads -----------------------------------------------------------------------


async def test_download_uses_authenticated_media_with_the_token_in_a_header(
    hs: tuple[FakeHomeserver, MediaClient],
) -> None:
    fake, media = hs
    assert await media.download("mxc://hs.test/abc", max_bytes=100) == fake.media
    (request,) = fake.seen
    assert request.path == "/_matrix/client/v1/media/download/hs.test/abc"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in str(request.url)
    assert TOKEN not in repr(media)


async def test_falls_back_to_legacy_media_when_v1_is_unknown(
    hs: tuple[FakeHomeserver, MediaClient],
) -> None:
    fake, media = hs
    fake.v1 = error(404, "M_UNRECOGNIZED")
    assert await media.download("mxc://hs.test/abc", max_bytes=100) == fake.media
    assert [r.path for r in fake.seen] == [
        "/_matrix/client/v1/media/download/hs.test/abc",
        "/_matrix/media/v3/download/hs.test/abc",
    ]


async def test_not_found_does_not_fall_back(hs: tuple[FakeHomeserver, MediaClient]) -> None:
    fake, media = hs
    fake.v1 = error(404, "M_NOT_FOUND")
    with pytest.raises(MediaNotFound) as e:
        await media.download("mxc://hs.test/abc", max_bytes=100)
    assert e.value.reason == "not_found" and e.value.errcode == "M_NOT_FOUND"
    assert len(fake.seen) == 1


async def test_legacy_not_found_after_fallback(hs: tuple[FakeHomeserver, MediaClient]) -> None:
    fake, media = hs
    fake.v1 = error(404, "M_UNRECOGNIZED")
    fake.v3 = error(404, "M_NOT_FOUND")
    with pytest.raises(MediaNotFound):
        await media.download("mxc://hs.test/abc", max_bytes=100)


async def test_byte_cap_with_and_without_content_length(
    hs: tuple[FakeHomeserver, MediaClient],
) -> None:
    fake, media = hs
    fake.media = b"x" * 1001
    with pytest.raises(MediaTooLarge) as e:
        await media.download("mxc://hs.test/abc", max_bytes=1000)
    assert e.value.reason == "too_large" and e.value.limit == 1000
    assert await media.download("mxc://hs.test/abc", max_bytes=1001) == fake.media

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(200):  # 200 x 64 KiB = 12.5 MiB, far past the cap
            await resp.write(b"y" * 65536)
        await resp.write_eof()
        return resp

    fake.v1 = chunked
    with pytest.raises(MediaTooLarge):
        await media.download("mxc://hs.test/abc", max_bytes=100_000)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
async def test_server_errors_are_transient(
    hs: tuple[FakeHomeserver, MediaClient], status: int
) -> None:
    fake, media = hs
    fake.v1 = error(status, "M_UNKNOWN")
    with pytest.raises(TransientError):
        await media.download("mxc://hs.test/abc", max_bytes=100)
    fake.upload = error(status, "M_UNKNOWN")
    with pytest.raises(TransientError):
        await media.upload(b"data", "text/plain", "a.txt")


@pytest.mark.parametrize(
    ("status", "reason"), [(401, "refused"), (403, "refused"), (400, "unexpected_status")]
)
async def test_refusals_are_media_errors(
    hs: tuple[FakeHomeserver, MediaClient], status: int, reason: str
) -> None:
    fake, media = hs
    fake.v1 = error(status, "M_FORBIDDEN")
    with pytest.raises(MediaError) as e:
        await media.download("mxc://hs.test/abc", max_bytes=100)
    assert e.value.reason == reason and e.value.status == status
    assert not isinstance(e.value, MediaNotFound | MediaTooLarge)


async def test_a_redirect_is_not_followed(hs: tuple[FakeHomeserver, MediaClient]) -> None:
    fake, media = hs

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/elsewhere")

    fake.v1 = redirect
    with pytest.raises(MediaError) as e:
        await media.download("mxc://hs.test/abc", max_bytes=100)
    assert e.value.status == 302
    assert [r.path for r in fake.seen] == ["/_matrix/client/v1/media/download/hs.test/abc"]


async def test_unreachable_and_slow_homeservers_are_transient() -> None:
    async with aiohttp.ClientSession() as session:
        media = MediaClient(session, f"http://127.0.0.1:{free_port()}", TOKEN, timeout=2)
        with pytest.raises(TransientError) as e:
            await media.download("mxc://hs.test/abc", max_bytes=100)
        assert TOKEN not in str(e.value)
        with pytest.raises(TransientError):
            await media.upload(b"data", "text/plain", "a.txt")

    fake = FakeHomeserver()

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.Response(body=b"late")

    fake.v1 = fake.upload = slow
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            media = MediaClient(session, str(server.make_url("")), TOKEN, timeout=0.3)
            with pytest.raises(TransientError):
                await media.download("mxc://hs.test/abc", max_bytes=100)
            with pytest.raises(TransientError):
                await media.upload(b"data", "text/plain", "a.txt")
    finally:
        await server.close()


# -- uploads -------------------------------------------------------------------------


async def test_upload_sends_filename_type_and_masquerade(
    hs: tuple[FakeHomeserver, MediaClient],
) -> None:
    fake, media = hs
    uri = await media.upload(
        b"%PDF", "application/pdf", "compte rendu é.pdf", user_id="@santeguard_mail_x:hs.test"
    )
    assert uri == "mxc://hs.test/NewMedia_1"
    (request,) = fake.seen
    assert request.query["filename"] == "compte rendu é.pdf"
    assert request.query["user_id"] == "@santeguard_mail_x:hs.test"
    assert request.headers["Content-Type"] == "application/pdf"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert fake.bodies == [b"%PDF"]

    await media.upload(b"x", "text/plain; charset=utf-8", "a&b=c.txt")
    assert fake.seen[1].query["filename"] == "a&b=c.txt"
    assert "user_id" not in fake.seen[1].query
    assert fake.seen[1].headers["Content-Type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize("bad", ["text/plain\r\nX-Evil: 1", "", "no-slash", "a/b\x00"])
async def test_unsafe_content_type_becomes_octet_stream(
    hs: tuple[FakeHomeserver, MediaClient], bad: str
) -> None:
    fake, media = hs
    await media.upload(b"x", bad, "a.bin")
    assert fake.seen[0].headers["Content-Type"] == "application/octet-stream"
    assert "X-Evil" not in fake.seen[0].headers


async def test_upload_errors(hs: tuple[FakeHomeserver, MediaClient]) -> None:
    fake, media = hs
    fake.upload = error(413, "M_TOO_LARGE")
    with pytest.raises(MediaTooLarge) as e:
        await media.upload(b"x", "text/plain", "a.txt")
    assert e.value.status == 413
    fake.upload = error(403, "M_FORBIDDEN")
    with pytest.raises(MediaError) as refused:
        await media.upload(b"x", "text/plain", "a.txt", user_id="@outsider:hs.test")
    assert refused.value.reason == "refused" and refused.value.errcode == "M_FORBIDDEN"

    async def weird(request: web.Request) -> web.StreamResponse:
        return web.json_response({"content_uri": "mxc://hs.test/../admin"})

    fake.upload = weird
    with pytest.raises(MediaError) as bad:
        await media.upload(b"x", "text/plain", "a.txt")
    assert bad.value.reason == "bad_response"
