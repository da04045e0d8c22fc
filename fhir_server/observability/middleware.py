"""Pure ASGI middleware on the hot path: request id, access log line, request metrics.

Not BaseHTTPMiddleware: that one copies every response through a task and a stream.
"""

import random
import re
from time import perf_counter
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .access_log import AccessLog
from .metrics import Metrics

REQUEST_ID_HEADER = b"x-request-id"
UNMATCHED = "unmatched"
# An incoming id is reused only if it is short and plain, so it cannot forge log lines.
_SAFE_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,200}")


class Telemetry:
    """What each request leaves behind: its access-log line and its metrics."""

    def __init__(self, metrics: Metrics | None, access_log: AccessLog | None) -> None:
        self.metrics = metrics
        self.access_log = access_log

    def record(
        self, request_id: str, method: str, route: str, path: str, status: int, seconds: float
    ) -> None:
        if self.metrics is not None:
            self.metrics.observe(method, route, status, seconds)
        if self.access_log is not None:
            self.access_log.record(request_id, method, route, path, status, seconds)


class TaggedSend:
    """An ASGI send that adds the X-Request-ID header to the response and notes its status
    (500 until a response starts)."""

    __slots__ = ("header", "send", "status")

    def __init__(self, send: Send, request_id: str) -> None:
        self.send = send
        self.header = (REQUEST_ID_HEADER, request_id.encode())
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            message["headers"] = [*message.get("headers", ()), self.header]
        await self.send(message)


class TelemetryMiddleware:
    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry
        self._routes_by_endpoint: dict[Any, list[Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        request_id = assign_request_id(scope)
        tagged = TaggedSend(send, request_id)
        try:
            await self.app(scope, receive, tagged)
        finally:
            route = self._route_template(scope)
            seconds = perf_counter() - start
            self.telemetry.record(
                request_id, scope["method"], route, scope["path"], tagged.status, seconds
            )

    def _route_template(self, scope: Scope) -> str:
        """The path template the router matched (e.g. /fhir/R4/AsyncJob/{id})."""
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return UNMATCHED
        candidates = self._routes_by_endpoint.get(endpoint)
        if candidates is None:
            routes = getattr(scope.get("app"), "routes", ())
            candidates = [r for r in routes if getattr(r, "endpoint", None) is endpoint]
            self._routes_by_endpoint[endpoint] = candidates
        if len(candidates) == 1:
            return str(candidates[0].path)
        for route in candidates:  # one endpoint on several paths, e.g. GET and POST search
            if route.matches(scope)[0] == Match.FULL:
                return str(route.path)
        return UNMATCHED


def assign_request_id(scope: Scope) -> str:
    """The request's id, kept in its state (request.state.request_id) for later layers."""
    request_id = request_id_of(scope)
    scope.setdefault("state", {})["request_id"] = request_id
    return request_id


def request_id_of(scope: Scope) -> str:
    """The id this request is known by: set by the middleware, else the client's plain
    X-Request-ID, else a new one."""
    state = scope.get("state") or {}
    if "request_id" in state:
        return str(state["request_id"])
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if _SAFE_ID.fullmatch(value):
                return str(value.decode())
            break
    # Random, so it tells nothing of the traffic; far cheaper than uuid4 (no system call).
    return f"{random.getrandbits(128):032x}"
