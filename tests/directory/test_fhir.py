"""FhirDirectory against a real local HTTP server serving the sample Bundles."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.app.wiring import build_translator
from bridge.identity.identifiers import IdentifierError
from bridge.identity.model import DirectoryLookup, DirectoryUnavailable
from bridge.identity.sources.fhir import FhirDirectory, FhirError

API_KEY = "k3y-5ecret-0123456789abcdef"
FHIR_JSON = "application/fhir+json"

TEXTS = build_translator(strict=True)


def message(error: IdentifierError | DirectoryUnavailable, lang: str = "fr") -> str:
    """The user-facing text of an error, from the one text catalog."""
    if isinstance(error, IdentifierError):
        return TEXTS.t(error.text_key, lang, **error.text_params)
    return TEXTS.t(error.TEXT_KEY, lang)


class Fake:
    """The API's behaviour and what it saw."""

    def __init__(self, data_dir: Path) -> None:
        fhir = data_dir / "fhir"
        self.active: dict[str, Any] = json.loads((fhir / "practitioner-active.json").read_text())
        self.inactive: dict[str, Any] = json.loads(
            (fhir / "practitioner-inactive.json").read_text()
        )
        self.roles: dict[str, Any] = json.loads((fhir / "practitionerrole-bundle.json").read_text())
        claire = next(
            e for e in self.roles["entry"] if e["resource"]["resourceType"] == "Practitioner"
        )
        self.claire: dict[str, Any] = searchset({**claire, "search": {"mode": "match"}})
        self.hits: Counter[str] = Counter()
        self.queries: list[dict[str, str]] = []
        self.failures: Counter[str] = Counter()  # mode → failures left before success


def searchset(*entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(entries),
        "entry": list(entries),
    }


def make_app(fake: Fake) -> web.Application:
    async def practitioner(request: web.Request) -> web.StreamResponse:
        fake.hits["Practitioner"] += 1
        fake.queries.append(dict(request.query))
        if request.headers.get("ESANTE-API-KEY") != API_KEY:
            return web.json_response({"resourceType": "OperationOutcome"}, status=401)
        ident = request.query.get("identifier", "")
        name = request.query.get("name", "").lower()
        body: dict[str, Any] = searchset()
        if ident == "urn:oid:1.2.250.1.71.4.2.1|810999990012":
            body = fake.active
        elif ident == "urn:oid:1.2.250.1.71.4.2.1|810999990053":
            body = fake.inactive
        elif ident == "urn:oid:1.2.250.1.71.4.2.1|810999990020":
            body = fake.claire
        elif ident == "https://rpps.esante.gouv.fr|10999990012":
            body = fake.active
        elif ident == "urn:oid:1.2.250.1.71.4.2.1|810999990038":
            body = fake.active  # a filter-ignoring server: wrong person, must not match
        elif name in ("exemple", "fictive", "e"):
            body = searchset(
                *(
                    e
                    for b in (fake.active, fake.claire)
                    for e in b["entry"]
                    if name in e["resource"]["name"][0]["family"].lower()
                )
            )
        return web.json_response(body, content_type=FHIR_JSON)

    async def roles(request: web.Request) -> web.StreamResponse:
        fake.hits["PractitionerRole"] += 1
        fake.queries.append(dict(request.query))
        if request.headers.get("ESANTE-API-KEY") != API_KEY:
            return web.Response(status=401)
        if request.query.get("practitioner") == "003-9999002":
            return web.json_response(fake.roles, content_type=FHIR_JSON)
        return web.json_response(searchset(), content_type=FHIR_JSON)

    async def hostile(request: web.Request) -> web.StreamResponse:
        mode = request.match_info["mode"]
        if request.match_info["resource"] == "PractitionerRole":
            return web.json_response(searchset(), content_type=FHIR_JSON)
        fake.hits[mode] += 1
        ok = web.json_response(fake.active, content_type=FHIR_JSON)
        if fake.failures[mode] > 0:
            fake.failures[mode] -= 1
            if mode == "flaky":
                return web.Response(status=503, text=f"busy {API_KEY}")
            if mode == "ratelimit":
                return web.Response(status=429, headers={"Retry-After": "0"})
            if mode == "drop":
                assert request.transport is not None
                request.transport.close()
                return web.Response()
        if mode == "slow":
            await asyncio.sleep(2)
            return ok
        if mode == "html":
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        if mode == "huge":  # streamed, no Content-Length: the cap must hold while reading
            resp = web.StreamResponse(headers={"Content-Type": FHIR_JSON})
            await resp.prepare(request)
            await resp.write(b'{"resourceType": "Bundle", "entry": [')
            for _ in range(200):
                await resp.write(b'{"resource": {"resourceType": "Basic"}},' * 100)
            return resp
        if mode == "huge_declared":
            return web.Response(body=b" " * 300_000, content_type=FHIR_JSON)
        if mode == "badjson":
            return web.Response(text='{"resourceType": "Bundle", ', content_type=FHIR_JSON)
        if mode == "deepjson":
            return web.Response(text="[" * 100_000 + "]" * 100_000, content_type=FHIR_JSON)
        if mode == "notbundle":
            return web.json_response({"resourceType": "Patient"}, content_type=FHIR_JSON)
        if mode == "list":
            return web.json_response([1, 2, 3], content_type=FHIR_JSON)
        if mode == "outcome":
            return web.json_response(
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"diagnostics": f"bad header ESANTE-API-KEY={API_KEY}"}],
                },
                content_type=FHIR_JSON,
            )
        if mode == "weird":  # a Bundle whose content has all the wrong shapes
            return web.json_response(
                {
                    "resourceType": "Bundle",
                    "entry": [
                        "x",
                        {"resource": "y"},
                        {
                            "resource": {
                                "resourceType": "Practitioner",
                                "identifier": "810999990012",
                                "name": "EXEMPLE",
                            }
                        },
                    ],
                },
                content_type=FHIR_JSON,
            )
        if mode == "notfound":
            return web.Response(status=404, text="no")
        if mode == "redirect":
            raise web.HTTPFound("http://attacker.invalid/steal")
        return ok  # flaky/ratelimit/drop once recovered

    app = web.Application()
    app.router.add_get("/fhir/Practitioner", practitioner)
    app.router.add_get("/fhir/PractitionerRole", roles)
    app.router.add_get("/hostile/{mode}/{resource}", hostile)
    return app


@pytest.fixture
def fake(data_dir: Path) -> Fake:
    return Fake(data_dir)


@pytest.fixture
async def server(fake: Fake) -> AsyncIterator[TestServer]:
    srv = TestServer(make_app(fake), host="127.0.0.1")
    await srv.start_server()
    try:
        yield srv
    finally:
        await srv.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def client(
    server: TestServer, session: aiohttp.ClientSession, path: str = "/fhir", **kw: Any
) -> FhirDirectory:
    kw.setdefault("backoff_s", 0.01)
    return FhirDirectory(str(server.make_url(path)), API_KEY, session=session, **kw)


async def test_active_practitioner(
    server: TestServer, session: aiohttp.ClientSession, fake: Fake
) -> None:
    fhir: DirectoryLookup = client(server, session)
    p = await fhir.lookup("10999990012")
    assert p is not None
    assert (p.idnps, p.id_kind, p.identifier) == ("810999990012", "rpps", "10999990012")
    assert (p.last_name, p.first_name, p.civility) == ("EXEMPLE", "Julien", "Docteur")
    assert (p.profession_code, p.profession_label) == ("10", "Médecin")
    assert (p.specialty_code, p.specialty_label) == ("SM53", "Spécialiste en Médecine Générale")
    assert p.active
    assert p.mailboxes == ("julien.exemple@medecin.mssante.fr",)
    assert fake.queries[0] == {"identifier": "urn:oid:1.2.250.1.71.4.2.1|810999990012"}


async def test_inactive_practitioner_is_returned_inactive(
    server: TestServer, session: aiohttp.ClientSession, fake: Fake
) -> None:
    p = await client(server, session).lookup("810999990053")
    assert p is not None and not p.active
    assert p.last_name == "ANCIEN" and p.mailboxes == () and p.cities == ()
    assert fake.hits["PractitionerRole"] == 0  # no roles fetched for someone inactive


async def test_roles_give_cities_mailboxes_and_profession(
    server: TestServer, session: aiohttp.ClientSession, fake: Fake
) -> None:
    # Remove the profession from qualification: it must then come from the roles.
    claire = fake.claire["entry"][0]["resource"]
    claire["qualification"] = claire["qualification"][1:]
    p = await client(server, session).lookup("810999990020")
    assert p is not None
    assert (p.last_name, p.first_name, p.civility) == ("FICTIVE", "Claire", "Docteur")
    assert p.profession_code == "10" and p.specialty_code == "SM54"
    assert p.cities == ("NANTES",)
    assert p.mailboxes == ("claire.fictive@medecin.mssante.fr",)
    role_query = next(q for q in fake.queries if "practitioner" in q)
    assert role_query == {
        "practitioner": "003-9999002",
        "_include": "PractitionerRole:organization",
    }


async def test_inactive_roles_are_ignored(
    server: TestServer, session: aiohttp.ClientSession, fake: Fake
) -> None:
    for entry in fake.roles["entry"]:
        if entry["resource"]["resourceType"] == "PractitionerRole":
            entry["resource"]["active"] = False
    p = await client(server, session).lookup("810999990020")
    assert p is not None and p.cities == ()
    assert p.mailboxes == ("claire.fictive@medecin.mssante.fr",)  # on the Practitioner itself


async def test_not_found_rpps_fallback_and_wrong_match(
    server: TestServer, session: aiohttp.ClientSession, fake: Fake
) -> None:
    fhir = client(server, session)
    assert await fhir.lookup("10000001916") is None
    assert [q["identifier"] for q in fake.queries] == [
        "urn:oid:1.2.250.1.71.4.2.1|810000001916",
        "https://rpps.esante.gouv.fr|10000001916",
    ]
    # The server answers someone else: not taken as a match.
    assert await fhir.lookup("810999990038") is None
    assert await fhir.lookup("0012600631") is None  # ADELI: no RPPS fallback
    assert fake.hits["Practitioner"] == 5


async def test_api_key_required_and_never_in_messages(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    wrong = FhirDirectory(str(server.make_url("/fhir")), "wrong-key", session=session)
    with pytest.raises(FhirError) as e:
        await wrong.lookup("810999990012")
    assert e.value.reason == "auth" and e.value.status == 401


async def test_cache_hit_avoids_a_second_request(
    server: TestServer, session: aiohttp.ClientSession, fake: Fake
) -> None:
    now = [1000.0]
    fhir = client(server, session, cache_ttl_s=60, clock=lambda: now[0])
    first = await fhir.lookup("810999990012")
    assert fake.hits["Practitioner"] == 1
    assert await fhir.lookup("10999990012") == first  # same person, other form
    assert await fhir.lookup("810000001916") is None
    assert await fhir.lookup("810000001916") is None  # negative answers are cached too
    assert fake.hits["Practitioner"] == 3
    assert fhir.requests_sent == 3 + fake.hits["PractitionerRole"] == 4
    now[0] += 61
    await fhir.lookup("810999990012")
    assert fake.hits["Practitioner"] == 4
    other = client(server, session, cache_ttl_s=60)  # caches are per instance
    await other.lookup("810999990012")
    assert fake.hits["Practitioner"] == 5


async def test_search(server: TestServer, session: aiohttp.ClientSession, fake: Fake) -> None:
    fhir = client(server, session)
    found = await fhir.search("Fictive", None, None, 10)
    assert [p.full_name for p in found] == ["Claire FICTIVE"]
    assert found[0].cities == ("NANTES",)
    assert fake.queries[0] == {"name": "Fictive", "active": "true", "_count": "10"}
    assert [p.last_name for p in await fhir.search("e", "médecin", None, 10)] == [
        "EXEMPLE",
        "FICTIVE",
    ]
    assert [p.last_name for p in await fhir.search("e", None, "nantes", 10)] == ["FICTIVE"]
    assert await fhir.search("e", "infirmier", None, 10) == []
    assert await fhir.search("e", "astronaute", None, 10) == []
    assert await fhir.search("  ", None, None, 10) == []


async def test_transient_503_then_success_is_retried(
    server: TestServer, session: aiohttp.ClientSession, fake: Fake
) -> None:
    fake.failures["flaky"] = 2
    fhir = client(server, session, "/hostile/flaky", retries=2)
    p = await fhir.lookup("810999990012")
    assert p is not None and p.last_name == "EXEMPLE"
    assert fake.hits["flaky"] == 3 and fhir.retries_done == 2


async def test_retries_are_bounded(
    server: TestServer, session: aiohttp.ClientSession, fake: Fake
) -> None:
    fake.failures["flaky"] = 10
    fhir = client(server, session, "/hostile/flaky", retries=2)
    with pytest.raises(FhirError) as e:
        await fhir.lookup("810999990012")
    assert e.value.reason == "http_503" and fake.hits["flaky"] == 3
    assert "3 attempts" in str(e.value)
    assert API_KEY not in str(e.value)


async def test_429_and_dropped_connections_are_retried(
    server: TestServer, session: aiohttp.ClientSession, fake: Fake
) -> None:
    fake.failures["ratelimit"] = 1
    assert await client(server, session, "/hostile/ratelimit").lookup("810999990012")
    assert fake.hits["ratelimit"] == 2
    fake.failures["drop"] = 1
    assert await client(server, session, "/hostile/drop").lookup("810999990012")
    assert fake.hits["drop"] == 2


async def test_4xx_is_not_retried(
    server: TestServer, session: aiohttp.ClientSession, fake: Fake
) -> None:
    with pytest.raises(FhirError) as e:
        await client(server, session, "/hostile/notfound", retries=3).lookup("810999990012")
    assert e.value.status == 404 and fake.hits["notfound"] == 1


async def test_timeout(server: TestServer, session: aiohttp.ClientSession, fake: Fake) -> None:
    fhir = client(server, session, "/hostile/slow", timeout_s=0.2, retries=1)
    started = time.monotonic()
    with pytest.raises(FhirError) as e:
        await fhir.lookup("810999990012")
    assert e.value.reason == "timeout"
    assert fake.hits["slow"] == 2
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("html", "content_type"),
        ("huge", "too_large"),
        ("huge_declared", "too_large"),
        ("badjson", "bad_json"),
        ("deepjson", "bad_json"),
        ("notbundle", "not_bundle"),
        ("list", "not_bundle"),
        ("outcome", "operation_outcome"),
        ("redirect", "redirect"),
    ],
)
async def test_hostile_responses(
    server: TestServer, session: aiohttp.ClientSession, fake: Fake, mode: str, reason: str
) -> None:
    fhir = client(server, session, f"/hostile/{mode}", max_body_bytes=200_000, retries=2)
    with pytest.raises(DirectoryUnavailable) as e:
        await fhir.lookup("810999990012")
    assert isinstance(e.value, FhirError) and e.value.reason == reason
    assert API_KEY not in str(e.value) and API_KEY not in message(e.value, "fr")
    assert fake.hits[mode] == 1  # none of these is worth a retry
    assert len(str(e.value)) < 300


async def test_operation_outcome_detail_is_redacted(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(FhirError) as e:
        await client(server, session, "/hostile/outcome").lookup("810999990012")
    assert "bad header ESANTE-API-KEY=***" in str(e.value)


async def test_wrong_shapes_do_not_crash(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    assert await client(server, session, "/hostile/weird").lookup("810999990012") is None


async def test_own_session_is_created_and_closed(server: TestServer) -> None:
    async with FhirDirectory(str(server.make_url("/fhir")), API_KEY) as fhir:
        assert await fhir.lookup("810999990012") is not None
        own = fhir._session
    assert own is not None and own.closed
