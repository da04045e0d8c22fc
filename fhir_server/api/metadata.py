"""GET [base]/metadata: the CapabilityStatement (public)."""

from starlette.requests import Request
from starlette.responses import Response

from ..notifications.websocket import PATH
from ..resources.capability import capability_statement
from ..resources.subscription import SUBSCRIPTION
from .responses import fhir_response
from .urls import fhir_base, token_url, websocket_url


async def metadata(request: Request) -> Response:
    state = request.app.state
    token = token_url(request) if state.settings.auth == "on" else None
    socket = websocket_url(request, PATH) if SUBSCRIPTION in state.kinds else None
    statement = capability_statement(fhir_base(request), state.kinds, token, socket)
    return fhir_response(request, statement)
