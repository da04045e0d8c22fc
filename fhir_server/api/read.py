"""read and vread: GET [type]/{id} and GET [type]/{id}/_history/{vid}."""

import re

from starlette.requests import Request
from starlette.responses import Response

from ..resources.kinds import ResourceKind
from ..resources.outcome import FhirError
from .records import load_live, resource_response, store_of, valid_id, version_headers
from .routing import Endpoint

# ASCII digits only (str.isdigit() also takes '²', which int() refuses), few enough to fit the
# stores' 64-bit integers.
_VERSION_ID = re.compile(r"[0-9]{1,18}")


def read(kind: ResourceKind) -> Endpoint:
    async def read(request: Request) -> Response:
        return resource_response(request, await load_live(request, kind))

    return read


def vread(kind: ResourceKind) -> Endpoint:
    async def vread(request: Request) -> Response:
        resource_id = valid_id(kind, request.path_params["id"])
        raw_version = request.path_params["vid"]
        if not _VERSION_ID.fullmatch(raw_version) or int(raw_version) < 1:
            raise FhirError.of("invalid", f"'{raw_version[:20]}' is not a version id")
        record = await store_of(request, kind).get_version(resource_id, int(raw_version))
        if record is None:
            raise FhirError.of(
                "not-found", f"{kind.type}/{resource_id}/_history/{raw_version} is not known"
            )
        if record.deleted:
            gone = FhirError.of(
                "deleted", f"{kind.type}/{resource_id} was deleted in {raw_version}"
            )
            gone.headers.update(version_headers(record))
            raise gone
        return resource_response(request, record)

    return vread
