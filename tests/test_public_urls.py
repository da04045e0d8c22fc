"""Links and the URLs a job records never come from what a client claims: with a public base
URL configured, a forged Host header changes no URL; no redirect is built from it; answers
to an authenticated request are not stored by shared caches."""

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fhir_server.api.kickoff import kick_off
from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.jobs.service import JobService
from fhir_server.storage.base import JobStore

from .conftest import ADMIN_HEADERS, TEST_JWT_SECRET, make_job, put_job
from .ehealth_helpers import output, reference

PUBLIC = "https://fhir.example.org"
EVIL = "http://evil.example"
ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
async def attacker(store: JobStore) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a server with a public base URL, sending `Host: evil.example`."""
    settings = Settings(secret_key="k", jwt_secret=TEST_JWT_SECRET, public_base_url=PUBLIC + "/")
    jobs = JobService(store)

    async def export(request: Request) -> Response:
        return await kick_off(request, jobs, type="bulk-export")

    app = create_app(settings, store=store, routes=[Route("/fhir/R4/$export", export)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=EVIL, headers=ADMIN_HEADERS) as http:
        yield http


def no_evil(response: httpx.Response) -> None:
    assert "evil.example" not in response.text
    assert all("evil.example" not in value for value in response.headers.values())


async def test_search_links_and_full_urls_use_the_public_base(
    attacker: httpx.AsyncClient, store: JobStore
):
    for _ in range(3):
        await put_job(store)
    response = await attacker.get("/fhir/R4/AsyncJob?_count=2")
    bundle = response.json()
    links = {link["relation"]: link["url"] for link in bundle["link"]}
    assert links["next"].startswith(f"{PUBLIC}/fhir/R4/AsyncJob?")
    assert all(e["fullUrl"].startswith(f"{PUBLIC}/fhir/R4/AsyncJob/") for e in bundle["entry"])
    no_evil(response)


async def test_location_of_a_create_uses_the_public_base(attacker: httpx.AsyncClient):
    job = make_job(id=None)
    response = await attacker.post("/fhir/R4/AsyncJob", json=job)
    assert response.status_code == 201
    assert response.headers["location"].startswith(f"{PUBLIC}/fhir/R4/AsyncJob/")
    no_evil(response)


async def test_history_full_urls_use_the_public_base(attacker: httpx.AsyncClient, store: JobStore):
    record = await put_job(store)
    response = await attacker.get(f"/fhir/R4/AsyncJob/{record.id}/_history")
    assert response.json()["entry"][0]["fullUrl"].startswith(f"{PUBLIC}/fhir/R4/AsyncJob/")
    no_evil(response)


async def test_capability_statement_names_the_public_base(attacker: httpx.AsyncClient):
    response = await attacker.get("/fhir/R4/metadata")
    assert response.json()["implementation"]["url"] == f"{PUBLIC}/fhir/R4"
    no_evil(response)


async def test_ehealth_meta_url_and_links_use_the_public_base(
    attacker: httpx.AsyncClient, store: JobStore
):
    parameters = output(reference("result", "Binary/result-1"))
    record = await put_job(store, status="completed", output=parameters)
    response = await attacker.get(f"/Jobs/{record.id}?trace=1")
    body = response.json()
    assert body["meta"]["url"] == f"{PUBLIC}/Jobs/{record.id}?trace=1"
    assert body["data"]["links"][0]["href"] == f"{PUBLIC}/fhir/R4/Binary/result-1"
    no_evil(response)


async def test_ehealth_errors_name_the_public_url(attacker: httpx.AsyncClient):
    response = await attacker.get("/Jobs/no-such-job")
    assert response.json()["meta"]["url"] == f"{PUBLIC}/Jobs/no-such-job"
    no_evil(response)


async def test_a_kick_off_records_and_answers_public_urls(
    attacker: httpx.AsyncClient, store: JobStore
):
    response = await attacker.get("/fhir/R4/$export?_type=Patient", headers=ASYNC)
    assert response.status_code == 202
    location = response.headers["content-location"]
    assert location.startswith(f"{PUBLIC}/fhir/R4/job/")
    job_id = location.split("/")[-2]
    stored = await store.get(job_id)
    assert stored is not None and stored.resource is not None
    assert stored.resource["request"] == f"{PUBLIC}/fhir/R4/$export?_type=Patient"
    no_evil(response)


@pytest.mark.parametrize("path", ["/fhir/R4/AsyncJob/", "/fhir/R4/metadata/", "/Jobs/job-1/"])
async def test_no_redirect_is_built_from_the_host_header(store: JobStore, path: str):
    """Not even without a public base URL: Starlette's trailing-slash redirect named the
    client's Host in its Location."""
    app = create_app(Settings(secret_key="k", jwt_secret=TEST_JWT_SECRET), store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=EVIL, headers=ADMIN_HEADERS) as http:
        response = await http.get(path)
    assert response.status_code == 404
    assert "location" not in response.headers


@pytest.mark.parametrize(
    "url", ["fhir.example.org", "ftp://fhir.example.org", "https://x.org/?a=1", "https://x.org/#f"]
)
def test_the_public_base_url_is_an_absolute_http_url(url: str):
    with pytest.raises(ValidationError):
        Settings(public_base_url=url)


def test_the_public_base_url_may_have_a_path_prefix():
    assert Settings(public_base_url="https://x.org/api/").public_base_url == "https://x.org/api"


async def test_without_a_public_base_url_links_follow_the_request(client: httpx.AsyncClient):
    """The default (a developer's machine, or a proxy that sets Host)."""
    response = await client.get("http://localhost:8000/fhir/R4/metadata")
    assert response.json()["implementation"]["url"] == "http://localhost:8000/fhir/R4"


# Cache-Control


async def test_answers_to_an_authenticated_request_are_not_stored(
    client: httpx.AsyncClient, store: JobStore
):
    record = await put_job(store)
    for path in (f"AsyncJob/{record.id}", "AsyncJob", f"http://testserver/Jobs/{record.id}"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.headers.get_list("cache-control") == ["no-store"], path


async def test_not_modified_and_errors_to_an_authenticated_request_are_not_stored(
    client: httpx.AsyncClient, store: JobStore
):
    record = await put_job(store)
    etag = (await client.get(f"AsyncJob/{record.id}")).headers["etag"]
    response = await client.get(f"AsyncJob/{record.id}", headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.headers["cache-control"] == "no-store"
    assert (await client.get("AsyncJob/unknown")).headers["cache-control"] == "no-store"


async def test_answers_without_an_accepted_token_carry_no_cache_control(store: JobStore):
    app = create_app(Settings(secret_key="k", jwt_secret=TEST_JWT_SECRET), store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        assert "cache-control" not in (await http.get("http://testserver/healthz")).headers
        refused = await http.get("http://testserver/fhir/R4/AsyncJob")
        assert refused.status_code == 401
        assert "cache-control" not in refused.headers
