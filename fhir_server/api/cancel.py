"""POST [base]/AsyncJob/{id}/$cancel: accepted → cancelled, answered "All OK"."""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..jobs.service import JobService
from ..resources.asyncjob import RESOURCE_TYPE
from ..resources.outcome import all_ok
from .fhir import BASE_PATH, store_of, valid_id
from .responses import fhir_response


async def cancel(request: Request) -> Response:
    """404 unknown, 410 deleted, 400 if the job already completed or failed."""
    job_id = valid_id(request.path_params["id"])
    await JobService(store_of(request)).cancel(job_id)
    return fhir_response(request, all_ok())


def routes() -> list[BaseRoute]:
    return [Route(f"{BASE_PATH}/{RESOURCE_TYPE}/{{id}}/$cancel", cancel, methods=["POST"])]
