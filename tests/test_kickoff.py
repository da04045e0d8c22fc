"""The kick-off helper for Starlette handlers (asynchronous request pattern)."""

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fhir_server.api.kickoff import kick_off
from fhir_server.jobs import JobService
from fhir_server.search.query import JobQuery
from fhir_server.storage.base import JobRecord, JobStore

SERVICE = "http://service.test"
ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
def started() -> list[JobRecord]:
    return []


@pytest.fixture
async def service(store: JobStore, started: list[JobRecord]) -> AsyncIterator[httpx.AsyncClient]:
    jobs = JobService(store)

    async def reindex(request: Request) -> Response:
        return await kick_off(request, jobs, type="reindex", start=started.append, owner="svc")

    app = Starlette(routes=[Route("/fhir/R4/$reindex", reindex, methods=["POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SERVICE) as http:
        yield http


async def test_kick_off_answers_202_with_the_status_url(
    service: httpx.AsyncClient, started: list[JobRecord]
):
    response = await service.post("/fhir/R4/$reindex", headers=ASYNC)
    assert response.status_code == 202
    job_id = started[0].id
    assert response.headers["content-location"] == f"{SERVICE}/fhir/R4/job/{job_id}/status"
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] == "information"


async def test_kick_off_submits_an_accepted_job_for_the_request(
    service: httpx.AsyncClient, store: JobStore, started: list[JobRecord]
):
    await service.post("/fhir/R4/$reindex?_type=Patient", headers=ASYNC)
    stored = await store.get(started[0].id)
    assert stored is not None and stored.resource is not None
    assert stored.resource["status"] == "accepted"
    assert stored.resource["request"] == f"{SERVICE}/fhir/R4/$reindex?_type=Patient"
    assert stored.resource["type"] == "reindex"
    assert stored.owner == "svc"


async def test_kick_off_without_respond_async_is_400_and_submits_nothing(
    service: httpx.AsyncClient, store: JobStore, started: list[JobRecord]
):
    response = await service.post("/fhir/R4/$reindex")
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["code"] == "invalid"
    assert "Prefer: respond-async" in issue["diagnostics"]
    assert started == []
    assert await store.count(JobQuery()) == 0


async def test_kick_off_reads_respond_async_among_other_preferences(
    service: httpx.AsyncClient,
):
    headers = {"Prefer": "handling=lenient, respond-async"}
    assert (await service.post("/fhir/R4/$reindex", headers=headers)).status_code == 202
