"""The producer API: JobService over every store."""

from typing import Any

import pytest

from fhir_server.api.http_status import status_of
from fhir_server.jobs import (
    JobCancelled,
    JobDeleted,
    JobNotFound,
    JobService,
    PreconditionFailed,
    RuleViolation,
)
from fhir_server.resources.outcome import FhirError
from fhir_server.search.query import JobQuery
from fhir_server.storage.base import JobRecord, JobStore

from .conftest import make_job, put_job

EXPORT = "https://example.org/fhir/R4/$export"


@pytest.fixture
def jobs(store: JobStore) -> JobService:
    return JobService(store)


def output_parameter(record: JobRecord, name: str) -> dict[str, Any]:
    assert record.resource is not None
    return next(p for p in record.resource["output"]["parameter"] if p["name"] == name)


async def test_submit_stores_an_accepted_job(jobs: JobService, store: JobStore):
    record = await jobs.submit(EXPORT, type="bulk-export", owner="user-1")
    stored = await store.get(record.id)
    assert stored is not None and stored.resource is not None
    assert stored.version == 1
    assert stored.owner == "user-1"
    assert stored.resource["status"] == "accepted"
    assert stored.resource["request"] == EXPORT
    assert stored.resource["type"] == "bulk-export"
    assert stored.resource["requestTime"] <= stored.last_updated


async def test_report_progress_sets_the_progress_parameter(jobs: JobService):
    job = await jobs.submit(EXPORT)
    await jobs.report_progress(job.id, "1 of 3")
    record = await jobs.report_progress(job.id, "2 of 3")
    assert record.version == 3
    assert output_parameter(record, "progress") == {"name": "progress", "valueString": "2 of 3"}
    assert record.resource is not None and record.resource["status"] == "accepted"


async def test_complete_stores_output_and_transaction_time(jobs: JobService):
    job = await jobs.submit(EXPORT)
    link = {"name": "output", "valueUri": "https://files.example.org/1.ndjson"}
    record = await jobs.complete(job.id, [link])
    assert record.resource is not None
    assert record.resource["status"] == "completed"
    assert record.resource["output"]["parameter"] == [link]
    # set when the job completed: at most the moment it was stored
    assert record.resource["transactionTime"] <= record.last_updated
    assert record.resource["transactionTime"] >= job.last_updated


async def test_complete_without_outputs_stores_parameters_without_an_empty_array(
    jobs: JobService,
):
    job = await jobs.submit(EXPORT)
    record = await jobs.complete(job.id, [])
    assert record.resource is not None
    assert record.resource["output"] == {"resourceType": "Parameters"}


async def test_fail_stores_the_outcome_and_status_code(jobs: JobService):
    job = await jobs.submit(EXPORT)
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "forbidden", "diagnostics": "not yours"}],
    }
    record = await jobs.fail(job.id, outcome, status_code=403)
    assert record.resource is not None
    assert record.resource["status"] == "error"
    assert "transactionTime" in record.resource
    assert output_parameter(record, "outcome")["resource"] == outcome
    assert output_parameter(record, "status_code")["valueInteger"] == 403


async def test_fail_with_a_message_builds_the_outcome(jobs: JobService):
    job = await jobs.submit(EXPORT)
    record = await jobs.fail(job.id, "disk full")
    issue = output_parameter(record, "outcome")["resource"]["issue"][0]
    assert issue["diagnostics"] == "disk full"
    assert output_parameter(record, "status_code")["valueInteger"] == 500


async def test_cancel_moves_accepted_to_cancelled(jobs: JobService):
    job = await jobs.submit(EXPORT)
    record = await jobs.cancel(job.id)
    assert record.resource is not None and record.resource["status"] == "cancelled"
    assert record.version == 2


async def test_cancel_of_a_cancelled_job_stores_no_new_version(jobs: JobService):
    job = await jobs.submit(EXPORT)
    await jobs.cancel(job.id)
    assert (await jobs.cancel(job.id)).version == 2


async def test_cancel_of_a_completed_job_is_refused(jobs: JobService):
    job = await jobs.submit(EXPORT)
    await jobs.complete(job.id)
    with pytest.raises(FhirError) as raised:
        await jobs.cancel(job.id)
    assert status_of(raised.value) == 400
    assert str(raised.value) == (
        "AsyncJob cannot be cancelled if status is not 'accepted', job had status 'completed'"
    )


async def test_progress_on_a_cancelled_job_raises_job_cancelled(jobs: JobService, store: JobStore):
    job = await jobs.submit(EXPORT)
    await jobs.cancel(job.id)
    with pytest.raises(JobCancelled):
        await jobs.report_progress(job.id, "50%")
    assert len(await store.history(job.id)) == 2


async def test_complete_on_a_cancelled_job_raises_job_cancelled(jobs: JobService):
    job = await jobs.submit(EXPORT)
    await jobs.cancel(job.id)
    with pytest.raises(JobCancelled):
        await jobs.complete(job.id)


async def test_a_completed_job_cannot_fail(jobs: JobService, store: JobStore):
    job = await jobs.submit(EXPORT)
    await jobs.complete(job.id)
    with pytest.raises(RuleViolation) as raised:
        await jobs.fail(job.id, "too late")
    assert status_of(raised.value) == 422
    assert raised.value.issues[0].code == "business-rule"
    assert len(await store.history(job.id)) == 2


async def test_invalid_output_is_refused_and_nothing_stored(jobs: JobService, store: JobStore):
    job = await jobs.submit(EXPORT)
    with pytest.raises(FhirError) as raised:
        await jobs.complete(job.id, [{"name": "output", "valueUri": 42}])
    assert status_of(raised.value) == 400
    assert len(await store.history(job.id)) == 1


async def test_get_of_an_unknown_job_raises_not_found(jobs: JobService):
    with pytest.raises(JobNotFound):
        await jobs.get("nope")


async def test_get_of_a_deleted_job_raises_deleted(jobs: JobService):
    job = await jobs.submit(EXPORT)
    await jobs.delete(job.id)
    with pytest.raises(JobDeleted):
        await jobs.get(job.id)


async def test_put_applies_the_same_rules_as_http(jobs: JobService, store: JobStore):
    await put_job(store, id="job-1", status="completed")
    with pytest.raises(RuleViolation):
        await jobs.put(make_job(id="job-1", status="accepted"))


async def test_put_with_a_stale_expected_version_fails_the_precondition(
    jobs: JobService, store: JobStore
):
    await put_job(store, id="job-1")
    await put_job(store, id="job-1", type="bulk-export")
    with pytest.raises(PreconditionFailed):
        await jobs.put(make_job(id="job-1", type="reindex"), expected_version=1)


class CancelBeforeFirstSave:
    """A store whose first save is overtaken by a cancel from another process."""

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self.saves = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def save(self, resource: dict[str, Any], **kwargs: Any) -> JobRecord:
        self.saves += 1
        if self.saves == 1:
            await JobService(self._store).cancel(resource["id"])
        return await self._store.save(resource, **kwargs)


async def test_a_cancel_during_progress_wins(store: JobStore):
    job = await JobService(store).submit(EXPORT)
    racing = CancelBeforeFirstSave(store)
    with pytest.raises(JobCancelled):
        await JobService(racing).report_progress(job.id, "50%")
    current = await store.get(job.id)
    assert current is not None and current.resource is not None
    assert current.resource["status"] == "cancelled"
    assert "output" not in current.resource
    assert racing.saves == 1


async def test_create_refuses_a_job_that_is_not_accepted(jobs: JobService, store: JobStore):
    with pytest.raises(RuleViolation) as raised:
        await jobs.create(make_job(status="completed"))
    assert raised.value.issues[0].expression == "AsyncJob.status"
    assert await store.count(JobQuery()) == 0


async def test_request_time_and_request_never_change(jobs: JobService, store: JobStore):
    await put_job(store, id="job-1")
    changed = make_job(
        id="job-1", requestTime="2026-05-05T00:00:00Z", request="https://example.org/x"
    )
    with pytest.raises(RuleViolation) as raised:
        await jobs.put(changed)
    assert {i.expression for i in raised.value.issues} == {
        "AsyncJob.requestTime",
        "AsyncJob.request",
    }
    assert len(await store.history("job-1")) == 1


async def test_an_error_without_an_outcome_is_refused(jobs: JobService, store: JobStore):
    await put_job(store, id="job-1")
    with pytest.raises(RuleViolation) as raised:
        await jobs.put(make_job(id="job-1", status="error"))
    assert raised.value.issues[0].expression == "AsyncJob.output"
    assert len(await store.history("job-1")) == 1


async def test_submit_refuses_a_type_outside_the_profile_and_stores_nothing(
    jobs: JobService, store: JobStore
):
    with pytest.raises(FhirError) as refused:
        await jobs.submit(EXPORT, type="export")
    assert status_of(refused.value) == 422
    assert refused.value.issues[0].expression == "AsyncJob.type"
    assert await store.count(JobQuery()) == 0


async def test_submit_of_a_data_migration_needs_both_versions(jobs: JobService):
    with pytest.raises(FhirError) as refused:
        await jobs.submit(EXPORT, type="data-migration", data_version=3)
    assert [i.expression for i in refused.value.issues] == ["AsyncJob.minServerVersion"]
    record = await jobs.submit(
        EXPORT, type="data-migration", data_version=3, min_server_version="0.1.0"
    )
    assert record.resource is not None
    assert record.resource["minServerVersion"] == "0.1.0"


async def test_a_job_stored_before_the_profile_still_runs_to_completion(
    jobs: JobService, store: JobStore
):
    """Its type is no longer one of the profile's: it is read, progressed and completed as it
    is (no data loss, no stuck job)."""
    await put_job(store, id="legacy", type="export")
    await jobs.report_progress("legacy", "1 of 2")
    record = await jobs.complete("legacy", [{"name": "n", "valueInteger": 1}])
    assert record.resource is not None
    assert (record.resource["type"], record.resource["status"]) == ("export", "completed")
