"""The one path every HTTP request takes, as a single pure-ASGI layer in front of the router.

In order: the request id (echoed in X-Request-ID), the bearer token (verified once; the
caller, or why its token was refused, is left in the scope for the route's access rule), the
body limit, then the router; whatever happens, one access-log line and the request metrics.
Nothing here renders an error: a refusal is raised by the matched route (api/routing.py), so
the application owning that route answers in its own format.
"""

from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..auth.tokens import UNRESTRICTED, InvalidToken, TokenVerifier
from ..observability.request_ids import REQUEST_ID_HEADER, assign_request_id
from ..observability.telemetry import Telemetry
from ..resources.outcome import FhirError
from .limits import body_too_large
from .routing import AUTH, AUTH_ERROR, MISSING_TOKEN, REJECTION, ROUTE, NotAuthenticated

UNMATCHED = "unmatched"


class RequestPipeline:
    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: TokenVerifier | None,
        telemetry: Telemetry,
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.telemetry = telemetry
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        request_id = assign_request_id(scope)
        header = (REQUEST_ID_HEADER, request_id.encode())
        status = 500  # until a response starts

        async def send_tagged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            self._authenticate(scope)
            await self.app(scope, self._limit_body(scope, receive), send_tagged)
        finally:
            seconds = perf_counter() - start
            route = scope.get(ROUTE, UNMATCHED)
            self.telemetry.record(
                request_id, scope["method"], route, scope["path"], status, seconds
            )

    def _authenticate(self, scope: Scope) -> None:
        """scope["auth"]: the caller; or AUTH_ERROR: why the token was refused."""
        if self.verifier is None:
            scope[AUTH] = UNRESTRICTED
            return
        token = _bearer_token(scope)
        if token is None:
            scope[AUTH_ERROR] = NotAuthenticated(MISSING_TOKEN, token_sent=False)
            return
        try:
            scope[AUTH] = self.verifier.verify(token)
        except InvalidToken as exc:
            scope[AUTH_ERROR] = NotAuthenticated(str(exc), token_sent=True)

    def _limit_body(self, scope: Scope, receive: Receive) -> Receive:
        """Refuse a declared Content-Length over the limit before anything reads the body;
        count the bytes of the others (chunked bodies too) as they arrive."""
        limit = self.max_body_bytes
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length" or name == b"transfer-encoding":
                declared = value if name == b"content-length" else b"0"
                break
        if declared is None:  # no body: nothing to count
            return receive
        if not declared.isdigit():
            scope[REJECTION] = FhirError.of("structure", "Content-Length is not a number")
        elif int(declared) > limit:
            scope[REJECTION] = body_too_large(limit)
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise body_too_large(limit)  # rendered by the route's application
            return message

        return counted


def _bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").strip().partition(" ")
            return token.strip() if kind.lower() == "bearer" and token.strip() else None
    return None
