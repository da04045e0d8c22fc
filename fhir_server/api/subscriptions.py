"""GET|POST [base]/Subscription/{id}/$get-ws-binding-token (Medplum's, and the R5 backport's):
a token binding a WebSocket to this subscription, when it expires, and the socket's URL; and
the socket itself (notifications/websocket.py)."""

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from ..auth.tokens import UNRESTRICTED
from ..notifications.websocket import PATH, WebSocketChannel
from ..resources.outcome import FhirError
from ..resources.subscription import SUBSCRIPTION
from .records import load_live
from .responses import fhir_response
from .urls import fhir_base, websocket_url


async def ws_binding_token(request: Request) -> Response:
    record = await load_live(request, SUBSCRIPTION)
    resource = record.resource or {}
    if resource.get("channel", {}).get("type") != "websocket":
        raise FhirError.of(
            "invalid", f"Subscription/{record.id} is not a websocket subscription", "channel.type"
        )
    if resource.get("status") != "active":
        raise FhirError.of("invalid", f"Subscription/{record.id} is not active", "status")
    channel: WebSocketChannel = request.app.state.websockets
    principal = request.scope.get("auth") or UNRESTRICTED
    base = fhir_base(request)
    token, expires = channel.tokens.issue(record.id, record.owner, principal, base)
    socket_url = websocket_url(request, PATH)
    expiration = datetime.fromtimestamp(expires, UTC).isoformat(timespec="seconds")
    return fhir_response(
        request,
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "token", "valueString": token},
                {"name": "expiration", "valueDateTime": expiration.replace("+00:00", "Z")},
                {"name": "websocket-url", "valueUrl": socket_url},
            ],
        },
    )


async def websocket(socket: WebSocket) -> None:
    channel: WebSocketChannel = socket.app.state.websockets
    await channel.serve(socket)
