"""GET and DELETE [base]/job/{id}/status: the asynchronous request pattern's status URL."""

from typing import Any

import httpx
import pytest

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


async def test_a_failed_job_answers_its_status_with_its_operation_outcome(
    client: httpx.AsyncClient, store: JobStore
):
    job = await JobService(store).submit("https://example.org/fhir/R4/$export")
    await JobService(store).fail(job.id, "disk full", status_code=507)
    response = await client.get(f"job/{job.id}/status")
    assert response.status_code == 507
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.json() == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception", "diagnostics": "disk full"}],
    }
    assert "retry-after" not in response.headers


def failed(issue_code: str | None, status_code: object = None) -> dict[str, Any]:
    """A failed job's output: an outcome whose first issue has issue_code (None: no outcome)
    and the producer's status_code parameter (None: none)."""
    parameters: list[dict[str, Any]] = []
    if issue_code is not None:
        issue = {"severity": "error", "code": issue_code, "diagnostics": "it failed"}
        outcome = {"resourceType": "OperationOutcome", "issue": [issue]}
        parameters.append({"name": "outcome", "resource": outcome})
    if isinstance(status_code, int):
        parameters.append({"name": "status_code", "valueInteger": status_code})
    elif status_code is not None:
        parameters.append({"name": "status_code", "valueString": status_code})
    return {"resourceType": "Parameters", "parameter": parameters}


@pytest.mark.parametrize(
    ("issue_code", "status_code", "answered"),
    [
        ("exception", 503, 503),  # the producer's status_code wins
        ("not-found", "404", 404),  # as a string too
        ("not-found", None, 404),  # else the first issue's type, as the eHealth adapter maps it
        ("forbidden", None, 403),
        ("invalid", None, 422),
        ("business-rule", None, 409),
        ("exception", None, 500),
        ("too-costly", None, 500),  # a type the table does not list
        ("not-found", 200, 404),  # not a failure status: ignored
        ("not-found", 401, 404),  # a credentials challenge is about the poller: ignored
        ("not-found", "４０４", 404),  # fullwidth digits are no status
        (None, None, 500),  # nothing said at all
    ],
)
async def test_a_failed_jobs_status_comes_from_its_status_code_else_its_outcome(
    client: httpx.AsyncClient,
    store: JobStore,
    issue_code: str | None,
    status_code: object,
    answered: int,
):
    output = failed(issue_code, status_code)
    await put_job(store, id="job-1", status="error", output=output)
    response = await client.get("job/job-1/status")
    assert response.status_code == answered
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    if issue_code is None:
        assert body["issue"] == [
            {"severity": "error", "code": "exception", "diagnostics": "Job failed"}
        ]
    else:
        assert body["issue"][0]["code"] == issue_code


def export_files(*files: tuple[str, str, str, int | None], **extra: Any) -> dict[str, Any]:
    """A bulk export's output: (parameter name, type, url, count) per file; extra parameters
    as name=valueBoolean."""
    parameters: list[dict[str, Any]] = []
    for name, resource_type, url, count in files:
        parts: list[dict[str, Any]] = [
            {"name": "type", "valueCode": resource_type},
            {"name": "url", "valueUri": url},
        ]
        if count is not None:
            parts.append({"name": "count", "valueInteger": count})
        parameters.append({"name": name, "part": parts})
    parameters += [{"name": k, "valueBoolean": v} for k, v in extra.items()]
    return {"resourceType": "Parameters", "parameter": parameters}


async def test_a_completed_export_answers_the_bulk_data_manifest(
    client: httpx.AsyncClient, store: JobStore
):
    output = export_files(
        ("output", "AsyncJob", "https://files.example.org/1.ndjson", 12),
        ("output", "AsyncJob", "https://files.example.org/2.ndjson", None),
        ("error", "OperationOutcome", "https://files.example.org/errors.ndjson", 1),
    )
    await put_job(
        store,
        id="job-1",
        type="bulk-export",
        status="completed",
        transactionTime="2026-01-01T00:05:00.000Z",
        output=output,
    )
    response = await client.get("job/job-1/status", headers={"Accept": "application/fhir+json"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["etag"] == 'W/"1"'
    assert response.json() == {
        "transactionTime": "2026-01-01T00:05:00.000Z",
        "request": "https://example.org/fhir/R4/$export",
        "requiresAccessToken": True,
        "output": [
            {"type": "AsyncJob", "url": "https://files.example.org/1.ndjson", "count": 12},
            {"type": "AsyncJob", "url": "https://files.example.org/2.ndjson"},
        ],
        "error": [
            {
                "type": "OperationOutcome",
                "url": "https://files.example.org/errors.ndjson",
                "count": 1,
            }
        ],
    }


async def test_the_manifest_has_an_empty_error_array_and_the_producers_token_requirement(
    client: httpx.AsyncClient, store: JobStore
):
    # Bulk Data asks for `error: []` when nothing failed (the manifest is no FHIR resource).
    output = export_files(
        ("output", "AsyncJob", "https://bucket.example.org/signed?sig=1", 3),
        requiresAccessToken=False,
    )
    await put_job(
        store,
        id="job-1",
        type="bulk-export",
        status="completed",
        transactionTime="2026-01-01T00:05:00.000Z",
        output=output,
    )
    manifest = (await client.get("job/job-1/status")).json()
    assert manifest["error"] == []
    assert manifest["requiresAccessToken"] is False


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"type": "reindex"}, "not an export"),
        ({"type": None}, "no type"),
        ({"type": "bulk-export", "output": None}, "no output"),
        ({"type": "bulk-export", "output": PROGRESS}, "no file listed"),
        ({"type": "bulk-export", "transactionTime": None}, "written past the status rules"),
    ],
)
async def test_other_completed_jobs_answer_the_asyncjob(
    client: httpx.AsyncClient, store: JobStore, fields: dict[str, Any], why: str
):
    output = export_files(("output", "AsyncJob", "https://files.example.org/1.ndjson", 1))
    done = {"output": output, "transactionTime": "2026-01-01T00:05:00.000Z"}
    await put_job(store, id="job-1", status="completed", **(done | fields))
    response = await client.get("job/job-1/status")
    assert response.status_code == 200, why
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.json()["resourceType"] == "AsyncJob"


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
