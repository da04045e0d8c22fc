"""POST [base]/AsyncJob/{id}/$cancel: accepted → cancelled, answered "All OK"."""

from starlette.requests import Request
from starlette.responses import Response

from ..jobs.service import JobService
from ..resources.asyncjob import ASYNC_JOB
from ..resources.outcome import all_ok
from .records import store_of, valid_id
from .responses import fhir_response


async def cancel(request: Request) -> Response:
    """not-found unknown, deleted, invalid if the job already completed or failed."""
    job_id = valid_id(ASYNC_JOB, request.path_params["id"])
    await JobService(store_of(request, ASYNC_JOB)).cancel(job_id)
    return fhir_response(request, all_ok())
