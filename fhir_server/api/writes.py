"""FHIR REST writes: create (POST), update (PUT), delete (DELETE) of any resource kind.

A kind's own rules (AsyncJob's status rules: jobs/rules.py, applied by JobService) live in
its Writer; this module speaks HTTP: media types, JSON, If-Match, Prefer and the headers.
"""

import re
from collections.abc import Callable
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..resources.kinds import ResourceKind
from ..resources.outcome import FhirError, all_ok
from ..storage.base import JobRecord, JobStore
from .http_status import ProtocolError
from .limits import check_json_shape, input_limits
from .owner import request_owner
from .records import store_of, valid_id, version_headers
from .responses import FHIR_VERSIONS, fhir_response, media_range, negotiate
from .routing import Endpoint
from .urls import fhir_base

BODY_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
RETURN_PREFERENCES = ("minimal", "representation", "OperationOutcome")
# ASCII digits only (\d also matches '٣'), few enough to fit the stores' 64-bit integers.
_IF_MATCH = re.compile(r'(?:W/)?"([0-9]{1,18})"')


class Writer(Protocol):
    """A kind's write logic (for AsyncJob: JobService and its status rules)."""

    async def create(self, resource: dict[str, Any], *, owner: str | None) -> JobRecord: ...

    async def put(
        self, resource: dict[str, Any], *, expected_version: int | None, owner: str | None
    ) -> tuple[JobRecord, bool]: ...

    async def delete(self, resource_id: str, /, *, expected_version: int | None) -> JobRecord: ...


WriterFactory = Callable[[JobStore], Writer]


def create(kind: ResourceKind, writer: WriterFactory) -> Endpoint:
    async def create(request: Request) -> Response:
        resource = await read_body(request, kind)
        record = await writer(store_of(request, kind)).create(
            resource, owner=request_owner(request)
        )
        return written(request, kind, record, 201, f"Created {kind.type}/{record.id}")

    return create


def update(kind: ResourceKind, writer: WriterFactory) -> Endpoint:
    async def update(request: Request) -> Response:
        resource_id = valid_id(kind, request.path_params["id"])
        resource = await read_body(request, kind)
        if resource.get("id") != resource_id:
            raise FhirError.of(
                "invalid",
                f"The body's id ({resource.get('id')!r}) must equal the id in the URL "
                f"('{resource_id}')",
                f"{kind.type}.id",
            )
        record, created = await writer(store_of(request, kind)).put(
            resource, expected_version=if_match(request), owner=request_owner(request)
        )
        name = f"{kind.type}/{resource_id}"
        if created:
            return written(request, kind, record, 201, f"Created {name}")
        return written(request, kind, record, 200, f"{name} is at version {record.version}")

    return update


def delete(kind: ResourceKind, writer: WriterFactory) -> Endpoint:
    async def delete(request: Request) -> Response:
        resource_id = valid_id(kind, request.path_params["id"])
        record = await writer(store_of(request, kind)).delete(
            resource_id, expected_version=if_match(request)
        )
        return Response(status_code=204, headers={"ETag": f'W/"{record.version}"'})

    return delete


async def read_body(request: Request, kind: ResourceKind) -> dict[str, Any]:
    """The JSON object in the body: 415 for another media type, 400 if it is not JSON."""
    body = await read_json(request, kind.type)
    check_json_shape(input_limits(request), body, kind.type)
    return body


async def read_json(request: Request, resource_type: str) -> dict[str, Any]:
    """read_body without the shape check: a Bundle's entries are checked one by one."""
    negotiate(request)  # a 406 before anything is written
    media_type, fhir_version = media_range(request.headers.get("content-type", ""))
    if fhir_version is not None and fhir_version not in FHIR_VERSIONS:
        raise ProtocolError(
            415,
            "not-supported",
            f"fhirVersion={fhir_version[:20]} is not supported; this server speaks FHIR R4 (4.0)",
        )
    if media_type not in BODY_TYPES:
        raise ProtocolError(
            415,
            "not-supported",
            f"Content-Type '{media_type or '(none)'}' is not supported; "
            "send application/fhir+json or application/json",
        )
    charset = _charset(request.headers.get("content-type", ""))
    if charset not in (None, "utf-8", "utf8"):
        raise ProtocolError(
            415, "not-supported", f"Charset '{charset[:40]}' is not supported; send UTF-8"
        )
    raw = await request.body()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FhirError.of("structure", f"The body is not valid UTF-8 (byte {exc.start})") from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FhirError.of("structure", f"The body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise FhirError.of("structure", f"The body must be a JSON object (a {resource_type})")
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
    return None if raw is None else etag_version(raw)


def etag_version(raw: str) -> int:
    """The version a version ETag (W/"3" or "3") names: If-Match, or a Bundle's ifMatch."""
    match = _IF_MATCH.fullmatch(raw.strip())
    if match is None:
        raise FhirError.of("invalid", f"If-Match '{raw[:40]}' is not a version ETag (W/\"n\")")
    return int(match[1])


def return_preference(request: Request) -> str:
    """Prefer: return=minimal | representation (default) | OperationOutcome."""
    for part in request.headers.get("prefer", "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "return" and value.strip().strip('"') in RETURN_PREFERENCES:
            return value.strip().strip('"')
    return "representation"


def written(
    request: Request, kind: ResourceKind, record: JobRecord, status_code: int, message: str
) -> Response:
    """201/200 with Location, ETag and Last-Modified; the body Prefer: return asks for."""
    headers = version_headers(record)
    headers["Location"] = f"{fhir_base(request)}/{kind.type}/{record.id}/_history/{record.version}"
    preference = return_preference(request)
    if preference == "minimal":
        return Response(status_code=status_code, headers=headers)
    if preference == "OperationOutcome":
        return fhir_response(request, all_ok(message), status_code, headers)
    return fhir_response(request, record.resource, status_code, headers)
