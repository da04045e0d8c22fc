"""The full flow a client sees, against the example export service and its worker."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from examples.export_service import create_export_app
from examples.worker import ExportWorker
from fhir_server import STATUSES
from fhir_server.config import Settings
from fhir_server.search.query import JobQuery
from fhir_server.storage.base import JobStore

from .conftest import ADMIN_HEADERS, BASE, bearer, put_job

ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
async def app_client(
    store: JobStore, settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, ExportWorker]]:
    app = create_export_app(settings, store, export_dir=tmp_path, pause=0.2)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE + "/", headers=ADMIN_HEADERS
    ) as http:
        yield http, app.state.worker
        await app.state.worker.stop()


async def test_a_client_kicks_off_polls_and_cancels_an_export(
    app_client: tuple[httpx.AsyncClient, ExportWorker], store: JobStore
):
    client, worker = app_client
    await put_job(store, id="old-export", status="completed")

    kicked = await client.get("$export", headers=ASYNC)
    assert kicked.status_code == 202
    status_url = kicked.headers["content-location"]
    job_id = status_url.split("/")[-2]
    assert status_url == f"{BASE}/job/{job_id}/status"

    running = await client.get(status_url)
    assert running.status_code == 202
    assert int(running.headers["retry-after"]) > 0

    assert await worker.wait(job_id) == "completed"
    done = await client.get(status_url)
    assert done.status_code == 200
    assert done.headers["content-type"] == "application/json"
    manifest = done.json()
    job = (await client.get(f"AsyncJob/{job_id}")).json()
    assert manifest == {
        "transactionTime": job["transactionTime"],
        "request": f"{BASE}/$export",
        "requiresAccessToken": True,
        "output": [
            {"type": "AsyncJob", "url": f"http://testserver/exports/{job_id}/{status}.ndjson"}
            | {"count": 1 if status in ("accepted", "completed") else 0}
            for status in STATUSES
        ],
        "error": [],
    }
    completed = manifest["output"][STATUSES.index("completed")]
    lines = (await client.get(completed["url"])).text.splitlines()
    assert len(lines) == completed["count"] == 1
    assert lines[0].startswith('{"resourceType":"AsyncJob","id":"old-export"')

    other = await client.get("$export", headers=ASYNC)
    other_url = other.headers["content-location"]
    cancelled = await client.delete(other_url)
    assert cancelled.status_code == 202
    assert (await client.get(other_url)).status_code == 404
    assert await worker.wait(other_url.split("/")[-2]) == "cancelled"


async def test_the_worker_reports_progress_while_it_runs(
    app_client: tuple[httpx.AsyncClient, ExportWorker], store: JobStore
):
    client, worker = app_client
    kicked = await client.post("$export", headers=ASYNC)
    job_id = kicked.headers["content-location"].split("/")[-2]
    await worker.wait(job_id)
    versions = await store.history(job_id)
    progress = [
        p["valueString"]
        for v in reversed(versions)
        if v.resource and "output" in v.resource
        for p in v.resource["output"]["parameter"]
        if p["name"] == "progress"
    ]
    assert progress == [f"{n} of 4 files written" for n in range(1, 5)]


async def test_a_cancelled_export_stops_without_completing(
    app_client: tuple[httpx.AsyncClient, ExportWorker], store: JobStore
):
    client, worker = app_client
    kicked = await client.get("$export", headers=ASYNC)
    job_id = kicked.headers["content-location"].split("/")[-2]
    await client.post(f"AsyncJob/{job_id}/$cancel")
    assert await worker.wait(job_id) == "cancelled"
    current = await store.get(job_id)
    assert current is not None and current.resource is not None
    assert current.resource["status"] == "cancelled"
    assert len(await store.history(job_id)) == 2


async def test_the_exported_files_need_a_token_that_reads_jobs(
    app_client: tuple[httpx.AsyncClient, ExportWorker], store: JobStore, tmp_path: Path
):
    client, worker = app_client
    kicked = await client.get("$export", headers=ASYNC)
    job_id = kicked.headers["content-location"].split("/")[-2]
    await worker.wait(job_id)
    url = f"http://testserver/exports/{job_id}/accepted.ndjson"
    assert (await client.get(url)).status_code == 200
    anonymous = await client.get(url, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert anonymous.json()["resourceType"] == "OperationOutcome"
    escape = await client.get("http://testserver/exports/..%2F..%2Fetc%2Fpasswd")
    assert escape.status_code == 404


async def test_since_exports_only_jobs_changed_at_or_after_it(
    app_client: tuple[httpx.AsyncClient, ExportWorker], store: JobStore
):
    client, worker = app_client
    old = await put_job(store, id="old-export", status="completed")
    kicked = await client.get(
        "$export", params={"_since": "2999-01-01T00:00:00Z", "_type": "AsyncJob"}, headers=ASYNC
    )
    assert kicked.status_code == 202, kicked.text
    job_id = kicked.headers["content-location"].split("/")[-2]
    assert await worker.wait(job_id) == "completed"
    manifest = (await client.get(kicked.headers["content-location"])).json()
    assert [f["count"] for f in manifest["output"]] == [0, 0, 0, 0]
    assert old.resource is not None


@pytest.mark.parametrize(
    "params",
    [
        {"_type": "Patient"},
        {"_type": "AsyncJob,Patient"},
        {"_since": "yesterday"},
        {"_since": "2026-01-01"},  # no time zone: not an instant
        {"_outputFormat": "text/csv"},
        {"_typeFilter": "AsyncJob?status=completed"},
    ],
)
async def test_a_kick_off_the_export_cannot_honour_is_a_400_and_starts_nothing(
    app_client: tuple[httpx.AsyncClient, ExportWorker], store: JobStore, params: dict[str, str]
):
    client, worker = app_client
    response = await client.get("$export", params=params, headers=ASYNC)
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [next(iter(params))]
    assert await store.count(JobQuery()) == 0
    assert worker.tasks == {}


async def test_a_kick_off_with_a_parameters_body_is_a_400_and_starts_nothing(
    app_client: tuple[httpx.AsyncClient, ExportWorker], store: JobStore
):
    client, worker = app_client
    assert worker.tasks == {}
    body = {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "X"}]}
    response = await client.post(
        "$export", json=body, headers=ASYNC | {"Content-Type": "application/fhir+json"}
    )
    assert response.status_code == 400
    assert response.json()["issue"][0]["code"] == "not-supported"
    assert await store.count(JobQuery()) == 0
    assert worker.tasks == {}


async def test_kick_off_needs_a_scope_that_creates_jobs(
    store: JobStore, settings: Settings, tmp_path: Path
):
    app = create_export_app(settings, store, export_dir=tmp_path, pause=0.2)
    headers = bearer("reader", "system/AsyncJob.rs")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE + "/", headers=headers) as http:
        response = await http.get("$export", headers=ASYNC)
    assert response.status_code == 403
    assert await store.count(JobQuery()) == 0
