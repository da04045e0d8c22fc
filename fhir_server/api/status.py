"""The status endpoint of the asynchronous request pattern: GET polls, DELETE cancels.

GET answers, by the job's status (docs/api.md has the table):
- accepted: 202 with the job, Retry-After and X-Progress;
- error: the failed request's 4xx/5xx with the job's OperationOutcome (R4's async pattern;
  the status as resources/failure.py derives it);
- completed: a `bulk-export` job that lists files, 200 with the Bulk Data manifest
  (application/json); any other, 200 with the job (Medplum's convention);
- cancelled, deleted or unknown: 404.
"""

from typing import Any
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..jobs.service import PROGRESS, JobDeleted, JobNotFound, JobService
from ..resources.asyncjob import ASYNC_JOB
from ..resources.failure import failure_outcome, failure_status
from ..resources.manifest import export_manifest
from ..resources.outcome import FhirError, all_ok
from ..storage.base import JobRecord
from .records import store_of, valid_id, version_headers
from .responses import fhir_response


async def running_job(request: Request) -> JobRecord:
    """The job the status URL names, as long as it is not cancelled: else 404."""
    job_id = valid_id(ASYNC_JOB, request.path_params["id"])
    try:
        record = await JobService(store_of(request, ASYNC_JOB)).get(job_id)
    except (JobNotFound, JobDeleted):
        raise _no_status(job_id) from None
    assert record.resource is not None
    if record.resource["status"] == "cancelled":
        raise _no_status(job_id)
    return record


async def poll(request: Request) -> Response:
    record = await running_job(request)
    job = record.resource
    assert job is not None
    if job["status"] == "error":
        return fhir_response(request, failure_outcome(job), failure_status(job))
    headers = version_headers(record)
    if job["status"] == "accepted":
        headers["Retry-After"] = str(request.app.state.settings.retry_after_seconds)
        headers["X-Progress"] = progress_of(job)
        return fhir_response(request, job, 202, headers)
    manifest = export_manifest(job)
    if manifest is not None:
        # Not a FHIR resource: plain JSON, whatever the client's Accept asks for.
        return Response(orjson.dumps(manifest), 200, headers, media_type="application/json")
    return fhir_response(request, job, 200, headers)


async def cancel(request: Request) -> Response:
    job_id = valid_id(ASYNC_JOB, request.path_params["id"])
    try:
        await JobService(store_of(request, ASYNC_JOB)).cancel(job_id)
    except (JobNotFound, JobDeleted):
        raise _no_status(job_id) from None
    return fhir_response(request, all_ok(f"AsyncJob/{job_id} cancelled"), 202)


def progress_of(job: dict[str, Any]) -> str:
    """The output parameter `progress`, else the status, as a header-safe string."""
    for parameter in (job.get("output") or {}).get("parameter", []):
        if parameter.get("name") != PROGRESS:
            continue
        for key in ("valueString", "valueInteger", "valueDecimal"):
            if key in parameter:
                return _header_safe(str(parameter[key]))
    return str(job["status"])


def _header_safe(text: str) -> str:
    """Printable ASCII kept, anything else percent-encoded (headers are latin-1 bytes)."""
    return "".join(c if " " <= c <= "~" else quote(c, safe="") for c in text[:200])


def _no_status(job_id: str) -> FhirError:
    return FhirError.of("not-found", f"No status for job {job_id}: unknown or cancelled")
