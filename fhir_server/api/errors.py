"""Every error of the FHIR API leaves as an OperationOutcome: no HTML, no stack traces."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..observability.request_ids import request_id_of
from ..resources.conformance import CONFORMANCE_TYPES
from ..resources.outcome import FhirError, Issue
from ..storage.base import StoreUnavailable
from .http_status import ProtocolError, status_of
from .responses import FHIR_JSON, FhirResponse, negotiate
from .routing import AUTH_ERROR, REJECTION
from .urls import BASE_PATH

log = logging.getLogger("fhir_server")
RETRY_AFTER_SECONDS = "5"


def render_fhir_error(request: Request, error: FhirError) -> Response:
    status = status_of(error)
    log.info(
        "%s %s -> %d %s [request_id=%s]",
        request.method,
        request.url.path,
        status,
        str(error)[:300],
        request_id_of(request.scope),
    )
    try:
        media_type, pretty = negotiate(request)
    except FhirError:
        media_type, pretty = FHIR_JSON, False
    return FhirResponse(error.outcome(), status, error.headers, media_type, pretty)


def routing_error(request: Request, exc: HTTPException) -> FhirError:
    path = request.url.path
    # No route serves this path: a request every route would refuse is refused as such.
    refused = request.scope.get(REJECTION) or request.scope.get(AUTH_ERROR)
    if exc.status_code == 404 and isinstance(refused, FhirError):
        return refused
    if exc.status_code == 404:
        if path.startswith(BASE_PATH + "/"):
            resource_type = path[len(BASE_PATH) + 1 :].split("/")[0]
            known = {kind.type for kind in request.app.state.kinds}.union(CONFORMANCE_TYPES)
            if resource_type not in known:
                return ProtocolError(
                    404, "not-supported", f"Resource type '{resource_type}' is not supported"
                )
        return ProtocolError(404, "not-found", f"No endpoint at {path}")
    if exc.status_code == 405:
        error = ProtocolError(
            405, "not-supported", f"Method {request.method} is not allowed on {path}"
        )
        error.headers.update(exc.headers or {})
        allowed = allowed_methods(request)
        if allowed:
            error.headers["Allow"] = ", ".join(allowed)
        return error
    return ProtocolError(exc.status_code, "processing", str(exc.detail))


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's Allow names only the first)."""
    methods: set[str] = set()
    root_path = request.scope.get("root_path", "")
    path = request.url.path.removeprefix(root_path)  # under a Mount: the path below it
    for route in request.app.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods |= route.methods
    return sorted(methods)


def store_unavailable(request: Request, exc: Exception) -> FhirError:
    log.warning("storage unavailable: %s [request_id=%s]", exc, request_id_of(request.scope))
    return FhirError(
        [Issue("transient", "The database is unavailable; retry shortly")],
        {"Retry-After": RETRY_AFTER_SECONDS},
    )


def unexpected(request: Request, exc: Exception) -> FhirError:
    log.error(
        "unhandled error on %s %s [request_id=%s]",
        request.method,
        request.url.path,
        request_id_of(request.scope),
        exc_info=exc,
    )
    return FhirError.of("exception", "Internal server error")


Render = Callable[[Request, FhirError], Response]
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


def exception_handlers(render: Render) -> dict[Any, ExceptionHandler]:
    """Every exception an application answers, each turned into a FhirError and answered
    with `render`: an OperationOutcome (render_fhir_error), or the eHealth envelope."""

    async def on_fhir_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FhirError)
        return render(request, exc)

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        """Starlette's own errors: no route (404) and wrong method (405)."""
        assert isinstance(exc, HTTPException)
        return render(request, routing_error(request, exc))

    async def on_store_unavailable(request: Request, exc: Exception) -> Response:
        return render(request, store_unavailable(request, exc))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        return render(request, unexpected(request, exc))

    return {
        FhirError: on_fhir_error,
        HTTPException: on_http_exception,
        StoreUnavailable: on_store_unavailable,
        Exception: on_unexpected,
    }


EXCEPTION_HANDLERS = exception_handlers(render_fhir_error)
