"""Kick-off of the FHIR asynchronous request pattern, for Starlette handlers.

    async def export(request: Request) -> Response:
        return await kick_off(request, jobs, type="bulk-export", start=worker.start)

`Prefer: respond-async` is required (400 without it); the job is submitted, `start` is
called with it, and the answer is 202 with `Content-Location` naming the status endpoint.
"""

import inspect
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from ..auth.ownership import visible_store
from ..jobs.service import JobService
from ..resources.outcome import FhirError, all_ok
from ..storage.base import JobRecord
from .errors import render_fhir_error
from .owner import request_owner
from .responses import fhir_response, negotiate
from .urls import fhir_base, request_url, status_url

Starter = Callable[[JobRecord], Awaitable[object] | object]


def prefers_async(request: Request) -> bool:
    prefer = request.headers.get("prefer", "")
    tokens = {t.strip().lower() for part in prefer.split(",") for t in part.split(";")}
    return "respond-async" in tokens


async def kick_off(
    request: Request,
    jobs: JobService,
    *,
    type: str | None = None,
    start: Starter | None = None,
    owner: str | None = None,
    base_url: str | None = None,
) -> Response:
    """Submit a job for this request and answer 202; every error is an OperationOutcome.

    owner defaults to the request's authenticated subject; base_url (the FHIR base that
    serves the status endpoint) to this server's.
    """
    try:
        negotiate(request)  # a 406 before any job is submitted
        if not prefers_async(request):
            raise FhirError.of(
                "invalid", "This operation runs asynchronously: send 'Prefer: respond-async'"
            )
        quota = getattr(request.app.state, "quota", None)
        if quota is not None:  # the caller's own store view holds its submit to the quota
            jobs = JobService(visible_store(jobs.store, request.scope.get("auth"), quota))
        job = await jobs.submit(
            request_url(request),
            type=type,
            owner=owner if owner is not None else request_owner(request),
        )
        if start is not None:
            started = start(job)
            if inspect.isawaitable(started):
                await started
    except FhirError as error:
        return render_fhir_error(request, error)
    location = status_url(base_url or fhir_base(request), job.id)
    message = f"AsyncJob/{job.id} accepted; poll {location} for its status"
    return fhir_response(request, all_ok(message), 202, {"Content-Location": location})
