"""eHealth (ЕСОЗ) job-status adapter: a read-only renderer over the JobStore, in eHealth's
envelope `{"data" | "error", "meta": {code, url, type, request_id}}`.

Every adapter route carries the scope it needs (`required_scope`) for the auth layer.
"""

import logging
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..observability.middleware import request_id_of
from ..resources import ehealth
from ..resources.asyncjob import ID_PATTERN
from ..storage.base import JobStore
from .fhir import fhir_base, store_of

log = logging.getLogger("fhir_server")
JOB_PREFIXES = ("/Jobs", "/api/jobs")
COMPOSITION_PREFIXES = ("/patients/composition/job", "/api/patients/composition/job")
ADAPTER_PREFIXES = (*JOB_PREFIXES, *COMPOSITION_PREFIXES)
JOB_SCOPE = "job:read"
COMPOSITION_SCOPE = "composition:read"

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

ERROR_TYPES = {
    400: "request_malformed",
    401: "access_denied",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "content_type_invalid",
    409: "request_conflict",
    415: "content_type_invalid",
    422: "validation_failed",
}
INTERNAL_ERROR = "internal_error"
MISSING_TOKEN_MESSAGE = "Authorization header is not set or doesn't contain Bearer token"
INVALID_TOKEN_MESSAGE = "Invalid access token"


class EhealthResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def is_adapter_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in ADAPTER_PREFIXES)


def request_id(request: Request) -> str:
    """The request's id, which the telemetry middleware also echoes in X-Request-ID."""
    return request_id_of(request.scope)


def request_url(request: Request) -> str:
    """The URL as the client sent it: the raw path keeps its percent-encoding."""
    raw_path: bytes | None = request.scope.get("raw_path")
    url = request.url.replace(path=raw_path.decode("latin-1")) if raw_path else request.url
    return str(url)


def envelope_response(
    request: Request,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> EhealthResponse:
    rid = request_id(request)
    meta = {"code": status, "url": request_url(request), "type": "object", "request_id": rid}
    return EhealthResponse({**body, "meta": meta}, status, headers)


def data_response(request: Request, status: int, data: dict[str, Any]) -> EhealthResponse:
    return envelope_response(request, status, {"data": data})


def error_response(
    request: Request,
    status: int,
    message: str,
    error_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> EhealthResponse:
    """An error in the envelope; the type follows the status unless given."""
    kind = error_type or ERROR_TYPES.get(
        status, INTERNAL_ERROR if status >= 500 else "request_malformed"
    )
    log.info(
        "%s %s -> %d %s: %s [request_id=%s]",
        request.method,
        request.url.path,
        status,
        kind,
        message,
        request_id(request),
    )
    return envelope_response(
        request, status, {"error": {"type": kind, "message": message}}, headers
    )


def access_denied(request: Request, message: str = MISSING_TOKEN_MESSAGE) -> EhealthResponse:
    """401 for a missing or invalid token (for the auth layer)."""
    return error_response(request, 401, message, "access_denied")


def forbidden(request: Request, missing_scope: str) -> EhealthResponse:
    """403 for a token without the route's scope (for the auth layer)."""
    message = (
        f"Your scope does not allow to access this resource. Missing allowances: {missing_scope}"
    )
    return error_response(request, 403, message, "forbidden")


def _store(request: Request) -> JobStore:
    """The jobs the caller may see (the same ownership rules as the FHIR API)."""
    return store_of(request)


def _default_eta(request: Request) -> timedelta:
    eta: timedelta = request.app.state.settings.ehealth_eta
    return eta


async def _live_resource(request: Request, job_id: str) -> dict[str, Any] | None:
    """The job's current resource; None if unknown or deleted (both answer 404)."""
    record = await _store(request).get(job_id)
    return None if record is None else record.resource


def job_status_endpoint(prefix: str) -> Callable[[Request], Awaitable[Response]]:
    async def job_status(request: Request) -> Response:
        job_id: str = request.path_params["id"]
        if not ID_PATTERN.fullmatch(job_id):
            return error_response(request, 400, f"Invalid job id '{job_id[:80]}'")
        resource = await _live_resource(request, job_id)
        if resource is None:
            return error_response(request, 404, "Job not found")
        view = ehealth.job_status(
            resource,
            self_href=f"{prefix}/{job_id}",
            fhir_base=fhir_base(request),
            default_eta=_default_eta(request),
        )
        return data_response(request, view.http_status, view.data)

    return job_status


def composition_status_endpoint(prefix: str) -> Callable[[Request], Awaitable[Response]]:
    async def composition_status(request: Request) -> Response:
        job_id: str = request.path_params["id"]
        if not _UUID.fullmatch(job_id):
            return error_response(request, 400, "Invalid request format")
        resource = await _live_resource(request, job_id)
        if resource is None:
            return error_response(request, 404, "Task not found")
        data = ehealth.composition_status(
            resource,
            self_href=f"{prefix}/{job_id}",
            fhir_base=fhir_base(request),
            default_eta=_default_eta(request),
        )
        return data_response(request, 200, data)

    return composition_status


class EhealthRoute(Route):
    """A GET route of the adapter that knows the OAuth scope a caller needs."""

    def __init__(
        self,
        prefix: str,
        endpoint: Callable[[Request], Awaitable[Response]],
        required_scope: str,
    ) -> None:
        super().__init__(f"{prefix}/{{id}}", endpoint, methods=["GET"])
        self.required_scope = required_scope


def routes() -> list[BaseRoute]:
    return [
        *(EhealthRoute(p, job_status_endpoint(p), JOB_SCOPE) for p in JOB_PREFIXES),
        *(
            EhealthRoute(p, composition_status_endpoint(p), COMPOSITION_SCOPE)
            for p in COMPOSITION_PREFIXES
        ),
    ]
