"""X-Request-ID: the client's (if it is 1-200 visible ASCII characters) or a new one, kept in
request.state for logs and error bodies, and answered on every response."""

import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_CLIENT_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,200}")


def choose_request_id(sent: str) -> str:
    return sent if _CLIENT_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex


def request_id(request: Request) -> str:
    """The id of this request, the same for its whole life."""
    cached: str | None = getattr(request.state, "request_id", None)
    if cached is None:
        cached = choose_request_id(request.headers.get(REQUEST_ID_HEADER, ""))
        request.state.request_id = cached
    return cached


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(Request(scope))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if REQUEST_ID_HEADER not in headers:
                    headers[REQUEST_ID_HEADER] = rid
            await send(message)

        await self.app(scope, receive, send_with_id)
