"""GET [base]/metadata: the CapabilityStatement (public)."""

from starlette.requests import Request
from starlette.responses import Response

from ..resources.capability import capability_statement
from .responses import fhir_response
from .urls import fhir_base


async def metadata(request: Request) -> Response:
    return fhir_response(request, capability_statement(fhir_base(request), request.app.state.kinds))
