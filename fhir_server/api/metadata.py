"""GET [base]/metadata: the CapabilityStatement (public)."""

from starlette.requests import Request
from starlette.responses import Response

from ..resources.capability import capability_statement
from .responses import fhir_response
from .urls import fhir_base, token_url


async def metadata(request: Request) -> Response:
    state = request.app.state
    token = token_url(request) if state.settings.auth == "on" else None
    return fhir_response(request, capability_statement(fhir_base(request), state.kinds, token))
