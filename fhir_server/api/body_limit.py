"""The request body limit, enforced before anything parses the body."""

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..resources.outcome import FhirError
from .errors import render_fhir_error
from .limits import body_too_large


class BodyLimitMiddleware:
    """413 when Content-Length is over the limit (the body is never read), or as soon as the
    bytes received (chunked bodies too) pass it."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            error = (
                body_too_large(self.limit)
                if declared.isdigit()
                else FhirError.of(400, "structure", "Content-Length is not a number")
            )
            await render_fhir_error(Request(scope), error)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise body_too_large(self.limit)  # answered by the FhirError handler
            return message

        await self.app(scope, counted, send)
