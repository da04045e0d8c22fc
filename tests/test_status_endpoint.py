"""GET and DELETE [base]/job/{id}/status: the asynchronous request pattern's status URL."""

import httpx

from fhir_server.config import Settings
from fhir_server.jobs import JobService
from fhir_server.storage.base import JobStore

from .conftest import put_job

PROGRESS = {
    "resourceType": "Parameters",
    "parameter": [{"name": "progress", "valueString": "42% (21 of 50)"}],
}


async def test_running_job_answers_202_with_the_job(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    response = await client.get("job/job-1/status")
    assert response.status_code == 202
    assert response.json()["resourceType"] == "AsyncJob"
    assert response.json()["id"] == "job-1"


async def test_running_job_answers_retry_after_from_settings(
    client: httpx.AsyncClient, store: JobStore, settings: Settings
):
    await put_job(store, id="job-1")
    response = await client.get("job/job-1/status")
    assert response.headers["retry-after"] == str(settings.retry_after_seconds)


async def test_x_progress_is_the_progress_parameter(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1", output=PROGRESS)
    response = await client.get("job/job-1/status")
    assert response.headers["x-progress"] == "42% (21 of 50)"


async def test_x_progress_without_a_progress_parameter_is_the_status(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1")
    assert (await client.get("job/job-1/status")).headers["x-progress"] == "accepted"


async def test_x_progress_percent_encodes_what_a_header_cannot_carry(
    client: httpx.AsyncClient, store: JobStore
):
    progress = {
        "resourceType": "Parameters",
        "parameter": [{"name": "progress", "valueString": "крок 1"}],
    }
    await put_job(store, id="job-1", output=progress)
    response = await client.get("job/job-1/status")
    assert response.headers["x-progress"] == "%D0%BA%D1%80%D0%BE%D0%BA 1"


async def test_completed_job_answers_200_with_the_job(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1", status="completed")
    response = await client.get("job/job-1/status")
    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert "retry-after" not in response.headers


async def test_failed_job_answers_200_with_the_job(client: httpx.AsyncClient, store: JobStore):
    job = await JobService(store).submit("https://example.org/fhir/R4/$export")
    await JobService(store).fail(job.id, "disk full")
    response = await client.get(f"job/{job.id}/status")
    assert response.status_code == 200
    assert response.json()["status"] == "error"


async def test_cancelled_job_answers_404(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1", status="cancelled")
    response = await client.get("job/job-1/status")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_unknown_job_answers_404(client: httpx.AsyncClient):
    response = await client.get("job/nope/status")
    assert response.status_code == 404
    assert response.json()["issue"][0]["code"] == "not-found"


async def test_delete_cancels_and_answers_202_then_status_is_404(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1")
    response = await client.delete("job/job-1/status")
    assert response.status_code == 202
    assert response.json()["resourceType"] == "OperationOutcome"
    assert (await client.get("job/job-1/status")).status_code == 404
    stored = await store.get("job-1")
    assert stored is not None and stored.resource is not None
    assert stored.resource["status"] == "cancelled"


async def test_delete_of_a_completed_job_is_400_like_cancel(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1", status="completed")
    response = await client.delete("job/job-1/status")
    assert response.status_code == 400
    assert response.json()["issue"][0]["diagnostics"] == (
        "AsyncJob cannot be cancelled if status is not 'accepted', job had status 'completed'"
    )
    assert len(await store.history("job-1")) == 1


async def test_delete_of_an_unknown_job_is_404(client: httpx.AsyncClient):
    assert (await client.delete("job/nope/status")).status_code == 404


async def test_status_of_a_malformed_id_is_400(client: httpx.AsyncClient):
    assert (await client.get("job/bad_id/status")).status_code == 400


async def test_deleted_job_answers_404(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    await store.delete("job-1", expected_version=1)
    assert (await client.get("job/job-1/status")).status_code == 404


async def test_delete_of_a_cancelled_job_answers_202_without_a_new_version(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1", status="cancelled")
    assert (await client.delete("job/job-1/status")).status_code == 202
    assert len(await store.history("job-1")) == 1
