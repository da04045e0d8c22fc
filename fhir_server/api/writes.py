"""FHIR REST writes for AsyncJob: create (POST), update (PUT), delete (DELETE).

The status rules live in jobs/rules.py and are applied by JobService; this module speaks HTTP:
media types, JSON, If-Match, Prefer and the answers' headers.
"""

import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..jobs.service import JobService
from ..resources.asyncjob import RESOURCE_TYPE
from ..resources.outcome import FhirError, all_ok
from ..storage.base import JobRecord
from .fhir import BASE_PATH, fhir_base, store_of, valid_id, version_headers
from .limits import check_json_depth
from .owner import request_owner
from .responses import fhir_response, negotiate

BODY_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
RETURN_PREFERENCES = ("minimal", "representation", "OperationOutcome")
_IF_MATCH = re.compile(r'(?:W/)?"(\d+)"')


async def create(request: Request) -> Response:
    resource = await read_body(request)
    record = await JobService(store_of(request)).create(resource, owner=request_owner(request))
    return written(request, record, 201, f"Created AsyncJob/{record.id}")


async def update(request: Request) -> Response:
    job_id = valid_id(request.path_params["id"])
    resource = await read_body(request)
    if resource.get("id") != job_id:
        raise FhirError.of(
            400,
            "invalid",
            f"The body's id ({resource.get('id')!r}) must equal the id in the URL ('{job_id}')",
            "AsyncJob.id",
        )
    record, created = await JobService(store_of(request)).put(
        resource, expected_version=if_match(request), owner=request_owner(request)
    )
    if created:
        return written(request, record, 201, f"Created AsyncJob/{job_id}")
    return written(request, record, 200, f"AsyncJob/{job_id} is at version {record.version}")


async def delete(request: Request) -> Response:
    job_id = valid_id(request.path_params["id"])
    record = await JobService(store_of(request)).delete(job_id, expected_version=if_match(request))
    return Response(status_code=204, headers={"ETag": f'W/"{record.version}"'})


async def read_body(request: Request) -> dict[str, Any]:
    """The JSON object in the body: 415 for another media type, 400 if it is not JSON."""
    negotiate(request)  # a 406 before anything is written
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in BODY_TYPES:
        raise FhirError.of(
            415,
            "not-supported",
            f"Content-Type '{media_type or '(none)'}' is not supported; "
            "send application/fhir+json or application/json",
        )
    charset = _charset(request.headers.get("content-type", ""))
    if charset not in (None, "utf-8", "utf8"):
        raise FhirError.of(
            415, "not-supported", f"Charset '{charset[:40]}' is not supported; send UTF-8"
        )
    raw = await request.body()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FhirError.of(
            400, "structure", f"The body is not valid UTF-8 (byte {exc.start})"
        ) from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FhirError.of(400, "structure", f"The body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise FhirError.of(400, "structure", "The body must be a JSON object (an AsyncJob)")
    check_json_depth(request, body)
    return body


def _charset(content_type: str) -> str | None:
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def if_match(request: Request) -> int | None:
    """The version an If-Match header names (W/"3" or "3"), None without the header."""
    raw = request.headers.get("if-match")
    if raw is None:
        return None
    match = _IF_MATCH.fullmatch(raw.strip())
    if match is None:
        raise FhirError.of(400, "invalid", f"If-Match '{raw[:40]}' is not a version ETag (W/\"n\")")
    return int(match[1])


def return_preference(request: Request) -> str:
    """Prefer: return=minimal | representation (default) | OperationOutcome."""
    for part in request.headers.get("prefer", "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "return" and value.strip().strip('"') in RETURN_PREFERENCES:
            return value.strip().strip('"')
    return "representation"


def written(request: Request, record: JobRecord, status_code: int, message: str) -> Response:
    """201/200 with Location, ETag and Last-Modified; the body Prefer: return asks for."""
    headers = version_headers(record)
    headers["Location"] = (
        f"{fhir_base(request)}/{RESOURCE_TYPE}/{record.id}/_history/{record.version}"
    )
    preference = return_preference(request)
    if preference == "minimal":
        return Response(status_code=status_code, headers=headers)
    if preference == "OperationOutcome":
        return fhir_response(request, all_ok(message), status_code, headers)
    return fhir_response(request, record.resource, status_code, headers)


def routes() -> list[BaseRoute]:
    path = f"{BASE_PATH}/{RESOURCE_TYPE}"
    return [
        Route(path, create, methods=["POST"]),
        Route(f"{path}/{{id}}", update, methods=["PUT"]),
        Route(f"{path}/{{id}}", delete, methods=["DELETE"]),
    ]
