"""Every error leaves as an OperationOutcome: no HTML, no stack traces."""

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..resources.asyncjob import RESOURCE_TYPE
from ..resources.outcome import FhirError, Issue
from ..storage.base import StoreUnavailable
from . import ehealth
from .responses import FhirResponse, negotiate

log = logging.getLogger("fhir_server")
FHIR_BASE = "/fhir/R4"


def render_fhir_error(request: Request, error: FhirError) -> Response:
    if ehealth.is_adapter_path(request.url.path):  # eHealth clients read only their envelope
        return ehealth.error_response(request, error.status, str(error), headers=error.headers)
    log.info(
        "%s %s -> %d %s [request_id=%s]",
        request.method,
        request.url.path,
        error.status,
        str(error)[:300],
        ehealth.request_id(request),
    )
    try:
        media_type, pretty = negotiate(request)
    except FhirError:
        media_type, pretty = "application/fhir+json", False
    return FhirResponse(error.outcome(), error.status, error.headers, media_type, pretty)


async def on_fhir_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    return render_fhir_error(request, exc)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own errors: no route (404) and wrong method (405)."""
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 404:
        error = FhirError.of(404, "not-found", f"No endpoint at {path}")
        if path.startswith(FHIR_BASE + "/"):
            resource_type = path[len(FHIR_BASE) + 1 :].split("/")[0]
            if resource_type != RESOURCE_TYPE:
                error = FhirError.of(
                    404, "not-supported", f"Resource type '{resource_type}' is not supported"
                )
    elif exc.status_code == 405:
        error = FhirError.of(
            405, "not-supported", f"Method {request.method} is not allowed on {path}"
        )
        error.headers.update(exc.headers or {})
        allowed = allowed_methods(request)
        if allowed:
            error.headers["Allow"] = ", ".join(allowed)
    else:
        error = FhirError.of(exc.status_code, "processing", str(exc.detail))
    return render_fhir_error(request, error)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's Allow names only the first)."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(request.url.path):
            methods |= route.methods
    return sorted(methods)


async def on_store_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("storage unavailable: %s [request_id=%s]", exc, ehealth.request_id(request))
    error = FhirError(
        503,
        [Issue("transient", "The database is unavailable; retry shortly")],
        {"Retry-After": "5"},
    )
    return render_fhir_error(request, error)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception(
        "unhandled error on %s %s [request_id=%s]",
        request.method,
        request.url.path,
        ehealth.request_id(request),
    )
    return render_fhir_error(request, FhirError.of(500, "exception", "Internal server error"))


EXCEPTION_HANDLERS = {
    FhirError: on_fhir_error,
    HTTPException: on_http_exception,
    StoreUnavailable: on_store_unavailable,
    Exception: on_unexpected,
}
