"""The status rules as an HTTP client meets them (PUT)."""

from typing import Any

import httpx

from fhir_server.storage.base import JobStore

from .conftest import make_job, put_job

FHIR_JSON = {"Content-Type": "application/fhir+json"}
OUTCOME = {
    "resourceType": "Parameters",
    "parameter": [
        {
            "name": "outcome",
            "resource": {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "exception", "diagnostics": "disk full"}],
            },
        }
    ],
}


async def put(client: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    job = make_job(id="job-1", **fields)
    return await client.put("AsyncJob/job-1", json=job, headers=FHIR_JSON)


async def assert_unchanged(store: JobStore, versions: int) -> None:
    assert len(await store.history("job-1")) == versions


async def test_completing_a_job_sets_transaction_time(client: httpx.AsyncClient, store: JobStore):
    accepted = await put_job(store, id="job-1")
    response = await put(client, status="completed")
    assert response.status_code == 200
    body = response.json()
    # Stamped by the rules just before the store stamps lastUpdated: same instant or 1 ms apart.
    assert accepted.last_updated <= body["transactionTime"] <= body["meta"]["lastUpdated"]


async def test_a_given_transaction_time_is_kept(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    response = await put(client, status="completed", transactionTime="2026-01-01T00:05:00.000Z")
    assert response.json()["transactionTime"] == "2026-01-01T00:05:00.000Z"


async def test_failing_a_job_sets_transaction_time(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    response = await put(client, status="error", output=OUTCOME)
    assert response.status_code == 200
    body = response.json()
    assert "2026-01-01" < body["transactionTime"] <= body["meta"]["lastUpdated"]


async def test_failing_without_an_outcome_is_422(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    response = await put(client, status="error")
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert issue["code"] == "business-rule"
    assert issue["expression"] == ["AsyncJob.output"]
    await assert_unchanged(store, 1)


async def test_cancelling_by_put_sets_no_transaction_time(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1")
    response = await put(client, status="cancelled")
    assert response.status_code == 200
    assert "transactionTime" not in response.json()


async def test_a_completed_job_cannot_return_to_accepted(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1", status="completed")
    response = await put(client, status="accepted")
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert issue["code"] == "business-rule"
    assert "'completed', a final status" in issue["diagnostics"]
    await assert_unchanged(store, 1)


async def test_a_failed_job_cannot_become_completed(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1", status="error", output=OUTCOME)
    assert (await put(client, status="completed")).status_code == 422
    await assert_unchanged(store, 1)


async def test_a_cancelled_job_cannot_become_completed(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1", status="cancelled")
    response = await put(client, status="completed")
    assert response.status_code == 422
    assert "cancelled" in response.json()["issue"][0]["diagnostics"]
    await assert_unchanged(store, 1)


async def test_a_final_job_keeps_its_output(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1", status="completed", transactionTime="2026-01-01T00:01:00Z")
    response = await put(
        client, status="completed", transactionTime="2026-01-01T00:01:00Z", output=OUTCOME
    )
    assert response.status_code == 422
    await assert_unchanged(store, 1)


async def test_request_time_cannot_change(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    response = await put(client, requestTime="2026-02-02T00:00:00.000Z")
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["AsyncJob.requestTime"]
    await assert_unchanged(store, 1)


async def test_request_cannot_change(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    response = await put(client, request="https://example.org/other")
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["AsyncJob.request"]
    await assert_unchanged(store, 1)


async def test_request_time_in_another_spelling_of_the_same_instant_is_no_change(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1")
    response = await put(client, requestTime="2026-01-01T02:00:00+02:00", type="bulk-export")
    assert response.status_code == 200


async def test_put_without_request_time_keeps_the_stored_one(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1")
    response = await put(client, requestTime=None, type="bulk-export")
    assert response.status_code == 200
    assert response.json()["requestTime"] == "2026-01-01T00:00:00.000Z"
