"""POST [base]/AsyncJob/{id}/$cancel."""

import httpx

from fhir_server.storage.base import JobStore

from .conftest import put_job


async def test_cancel_of_an_accepted_job_answers_all_ok(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    response = await client.post("AsyncJob/job-1/$cancel")
    assert response.status_code == 200
    assert response.json() == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": "All OK"}],
    }


async def test_cancel_stores_the_cancelled_status(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    await client.post("AsyncJob/job-1/$cancel")
    job = (await client.get("AsyncJob/job-1")).json()
    assert job["status"] == "cancelled"
    assert job["meta"]["versionId"] == "2"


async def test_cancel_of_a_cancelled_job_answers_the_same_without_a_new_version(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1", status="cancelled")
    response = await client.post("AsyncJob/job-1/$cancel")
    assert response.status_code == 200
    assert response.json()["issue"][0]["diagnostics"] == "All OK"
    assert len(await store.history("job-1")) == 1


async def test_cancel_of_a_completed_job_is_400_invalid(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1", status="completed")
    response = await client.post("AsyncJob/job-1/$cancel")
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["code"] == "invalid"
    assert issue["diagnostics"] == (
        "AsyncJob cannot be cancelled if status is not 'accepted', job had status 'completed'"
    )
    assert len(await store.history("job-1")) == 1


async def test_cancel_of_a_failed_job_names_its_status(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1", status="error")
    response = await client.post("AsyncJob/job-1/$cancel")
    assert response.status_code == 400
    assert response.json()["issue"][0]["diagnostics"].endswith("job had status 'error'")


async def test_cancel_of_an_unknown_job_is_404(client: httpx.AsyncClient):
    assert (await client.post("AsyncJob/nope/$cancel")).status_code == 404


async def test_cancel_of_a_deleted_job_is_410(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    await store.delete("job-1", expected_version=1)
    assert (await client.post("AsyncJob/job-1/$cancel")).status_code == 410
