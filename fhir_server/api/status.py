"""The status endpoint of the asynchronous request pattern: GET polls, DELETE cancels.

GET answers 202 (with Retry-After and X-Progress) while the job is accepted, 200 once it
completed or failed, 404 when it was cancelled, deleted or never existed.
"""

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from ..jobs.service import PROGRESS, JobDeleted, JobNotFound, JobService
from ..resources.asyncjob import ASYNC_JOB
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
    assert record.resource is not None
    headers = version_headers(record)
    if record.resource["status"] != "accepted":
        return fhir_response(request, record.resource, 200, headers)
    headers["Retry-After"] = str(request.app.state.settings.retry_after_seconds)
    headers["X-Progress"] = progress_of(record.resource)
    return fhir_response(request, record.resource, 202, headers)


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
