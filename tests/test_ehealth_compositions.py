"""eHealth composition job status, GET /patients/composition/job/{id} (and under /api)."""

import httpx
import pytest

from fhir_server.storage.base import JobStore

from .conftest import put_job
from .ehealth_helpers import ETA_FORMAT, get, issue, link, meta, outcome, output

PREFIXES = ["/patients/composition/job", "/api/patients/composition/job"]
JOB_ID = "89678f60-4cdc-4fe3-ae83-e8b3ebd35c59"
DEFAULT_ETA = "2026-01-01T00:10:00.000Z"


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_accepted_composition_job_is_pending_without_links(
    client: httpx.AsyncClient, store: JobStore, prefix: str
):
    await put_job(store, id=JOB_ID, status="accepted")
    response = await get(client, f"{prefix}/{JOB_ID}")
    assert response.status_code == 200
    assert response.json() == {
        "data": {"id": JOB_ID, "eta": DEFAULT_ETA, "status": "PENDING", "links": []},
        "meta": meta(200, f"{prefix}/{JOB_ID}"),
    }


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_completed_composition_job_is_done_with_the_links_from_output(
    client: httpx.AsyncClient, store: JobStore, prefix: str
):
    href = "composition/d4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f70"
    parameters = output(link("composition", href, href_key="valueString"))
    await put_job(store, id=JOB_ID, status="completed", output=parameters)
    response = await get(client, f"{prefix}/{JOB_ID}")
    assert response.status_code == 200
    assert response.json() == {
        "data": {
            "id": JOB_ID,
            "eta": DEFAULT_ETA,
            "status": "DONE",
            "links": [{"entity": "composition", "href": href}],
        },
        "meta": meta(200, f"{prefix}/{JOB_ID}"),
    }


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_error_composition_job_is_failed_with_one_job_link_carrying_the_error(
    client: httpx.AsyncClient, store: JobStore, prefix: str
):
    parameters = output(outcome(issue("forbidden", text="Signer is not the author")))
    await put_job(store, id=JOB_ID, status="error", output=parameters)
    response = await get(client, f"{prefix}/{JOB_ID}")
    assert response.status_code == 200
    assert response.json() == {
        "data": {
            "id": JOB_ID,
            "eta": DEFAULT_ETA,
            "status": "FAILED",
            "links": [
                {
                    "entity": "job",
                    "href": f"{prefix}/{JOB_ID}",
                    "error": "Signer is not the author",
                }
            ],
        },
        "meta": meta(200, f"{prefix}/{JOB_ID}"),
    }


async def test_error_composition_job_without_outcome_fails_with_job_failed(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id=JOB_ID, status="error")
    data = (await get(client, f"/patients/composition/job/{JOB_ID}")).json()["data"]
    assert data["links"][0]["error"] == "Job failed"


async def test_cancelled_composition_job_is_failed_with_job_was_cancelled(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id=JOB_ID, status="cancelled")
    data = (await get(client, f"/patients/composition/job/{JOB_ID}")).json()["data"]
    assert data["status"] == "FAILED"
    assert data["links"] == [
        {
            "entity": "job",
            "href": f"/patients/composition/job/{JOB_ID}",
            "error": "Job was cancelled",
        }
    ]


async def test_composition_eta_has_the_ehealth_format(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id=JOB_ID, requestTime="2026-07-01T09:30:00.5-03:00")
    data = (await get(client, f"/patients/composition/job/{JOB_ID}")).json()["data"]
    assert ETA_FORMAT.match(data["eta"])
    assert data["eta"] == "2026-07-01T12:40:00.500Z"


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("bad", ["job-1", "89678f60-4cdc-4fe3-ae83-e8b3ebd35c5", "89678f60x"])
async def test_id_that_is_not_a_uuid_is_400_invalid_request_format(
    client: httpx.AsyncClient, store: JobStore, prefix: str, bad: str
):
    await put_job(store, id=bad)  # even an existing job: compositions are addressed by UUID
    response = await get(client, f"{prefix}/{bad}")
    assert response.status_code == 400
    assert response.json() == {
        "error": {"type": "request_malformed", "message": "Invalid request format"},
        "meta": meta(400, f"{prefix}/{bad}"),
    }


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_unknown_composition_job_is_404_task_not_found(
    client: httpx.AsyncClient, prefix: str
):
    response = await get(client, f"{prefix}/{JOB_ID}")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"type": "not_found", "message": "Task not found"},
        "meta": meta(404, f"{prefix}/{JOB_ID}"),
    }


async def test_deleted_composition_job_is_404_task_not_found(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id=JOB_ID)
    await store.delete(JOB_ID, expected_version=1)
    response = await get(client, f"/patients/composition/job/{JOB_ID}")
    assert response.status_code == 404
    assert response.json()["error"] == {"type": "not_found", "message": "Task not found"}
