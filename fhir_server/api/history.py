"""history-instance: GET [type]/{id}/_history, every version newest first."""

from starlette.requests import Request
from starlette.responses import Response

from ..resources import bundle
from ..resources.kinds import ResourceKind
from ..resources.outcome import FhirError
from .records import store_of, valid_id
from .responses import fhir_response
from .routing import Endpoint
from .urls import fhir_base


def history(kind: ResourceKind) -> Endpoint:
    async def history(request: Request) -> Response:
        resource_id = valid_id(kind, request.path_params["id"])
        records = await store_of(request, kind).history(resource_id)
        if not records:
            raise FhirError.of("not-found", f"{kind.type}/{resource_id} is not known")
        base = fhir_base(request)
        versions = [bundle.Version(r.id, r.version, r.last_updated, r.resource) for r in records]
        self_url = f"{base}/{kind.type}/{resource_id}/_history"
        return fhir_response(request, bundle.history(base, kind.type, versions, self_url=self_url))

    return history
