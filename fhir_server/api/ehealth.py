"""eHealth (ЕСОЗ) job-status adapter: a read-only renderer over the AsyncJob store, in
eHealth's envelope `{"data" | "error", "meta": {code, url, type, request_id}}`.

Each adapter path is a mounted sub-application with its own error rendering: whatever goes
wrong under it (a refused token, a missing scope, an unknown path, the database) is answered
in the envelope, while the same request path (api/pipeline.py) runs in front of it.
"""

import logging
import re
from datetime import timedelta
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Mount
from starlette.types import Scope

from ..auth.scopes import NamedScope
from ..observability.request_ids import request_id_of
from ..resources import ehealth
from ..resources.asyncjob import ASYNC_JOB
from ..resources.kinds import ID_PATTERN
from ..resources.outcome import FhirError
from ..storage.base import JobStore
from .errors import exception_handlers
from .http_status import status_of
from .records import store_of
from .routing import AccessDenied, Endpoint, GuardedRoute, NotAuthenticated
from .urls import fhir_base, request_url

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
    429: "too_many_requests",
}
INTERNAL_ERROR = "internal_error"
MISSING_TOKEN_MESSAGE = "Authorization header is not set or doesn't contain Bearer token"
INVALID_TOKEN_MESSAGE = "Invalid access token"


class EhealthResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def request_id(request: Request) -> str:
    """The request's id, which the telemetry middleware also echoes in X-Request-ID."""
    return request_id_of(request.scope)


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


def error_envelope(request: Request, error: FhirError) -> EhealthResponse:
    """Any error, as the eHealth gateway words it."""
    status = status_of(error)
    if isinstance(error, NotAuthenticated):
        # The gateway's own texts; the reason stays in WWW-Authenticate.
        text = INVALID_TOKEN_MESSAGE if error.token_sent else MISSING_TOKEN_MESSAGE
        return error_response(request, status, text, "access_denied", error.headers)
    if isinstance(error, AccessDenied):
        message = (
            "Your scope does not allow to access this resource. "
            f"Missing allowances: {error.access.missing}"
        )
        return error_response(request, status, message, "forbidden", error.headers)
    return error_response(request, status, str(error), headers=error.headers)


def _store(request: Request) -> JobStore:
    """The jobs the caller may see (the same ownership rules as the FHIR API)."""
    return store_of(request, ASYNC_JOB)


def _default_eta(request: Request) -> timedelta:
    eta: timedelta = request.app.state.settings.ehealth_eta
    return eta


async def _live_resource(request: Request, job_id: str) -> dict[str, Any] | None:
    """The job's current resource; None if unknown or deleted (both answer 404)."""
    record = await _store(request).get(job_id)
    return None if record is None else record.resource


def job_status_endpoint(prefix: str) -> Endpoint:
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


def composition_status_endpoint(prefix: str) -> Endpoint:
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


class AdapterMount(Mount):
    """A Mount that takes every path under its prefix, the bare prefix included: all of them
    belong to the adapter and are answered in its envelope (Mount's own pattern stops at a
    newline, and leaves the bare prefix to a redirect)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return super().matches(scope)
        root_path = scope.get("root_path", "")
        prefix = root_path + self.path
        path = scope["path"]
        if path != prefix and not path.startswith(prefix + "/"):
            return Match.NONE, {}
        child = {
            "path_params": {},
            "app_root_path": scope.get("app_root_path", root_path),
            "root_path": prefix,
            "endpoint": self.app,
        }
        return Match.FULL, child


def _adapter(prefix: str, endpoint: Endpoint, scope: str) -> Mount:
    route = GuardedRoute(
        "/{id}", endpoint, methods=["GET"], access=NamedScope(scope), template=f"{prefix}/{{id}}"
    )
    app = Starlette(
        routes=[route],
        exception_handlers=exception_handlers(error_envelope),
    )
    return AdapterMount(prefix, app=app)


def mounts() -> list[Mount]:
    """One sub-application per adapter path."""
    return [
        *(_adapter(p, job_status_endpoint(p), JOB_SCOPE) for p in JOB_PREFIXES),
        *(
            _adapter(p, composition_status_endpoint(p), COMPOSITION_SCOPE)
            for p in COMPOSITION_PREFIXES
        ),
    ]
