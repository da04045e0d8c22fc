"""history-instance: GET [type]/{id}/_history, every version newest first."""

from starlette.requests import Request
from starlette.responses import Response

from ..resources import bundle
from ..resources.kinds import ResourceKind
from ..resources.outcome import FhirError
from .records import store_of, valid_id
from .responses import bundle_response
from .routing import Endpoint
from .urls import fhir_base


def history(kind: ResourceKind) -> Endpoint:
    async def history(request: Request) -> Response:
        resource_id = valid_id(kind, request.path_params["id"])
        records = await store_of(request, kind).history(resource_id)
        if not records:
            raise FhirError.of("not-found", f"{kind.type}/{resource_id} is not known")
        base = fhir_base(request)
        # Each version as the store keeps it (not parsed; measuring a MongoDB one serializes
        # it once, for the answer too), the Bundle streamed when large.
        weight = sum(r.size for r in records)
        versions = [bundle.Version(r.id, r.version, r.last_updated, r.body) for r in records]
        self_url = f"{base}/{kind.type}/{resource_id}/_history"
        history = bundle.history(base, kind.type, versions, self_url=self_url)
        return bundle_response(request, history, weight)

    return history
