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


class TelemetryMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics | None, access_log: AccessLog | None) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        self._routes_by_endpoint: dict[Any, list[Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id  # request.state.request_id
        id_header = (REQUEST_ID_HEADER, request_id.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = perf_counter() - start
            route = self._route_template(scope)
            method = scope["method"]
            if self.metrics is not None:
                self.metrics.observe(method, route, status, seconds)
            if self.access_log is not None:
                self.access_log.record(request_id, method, route, scope["path"], status, seconds)

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
    # Unique enough to correlate log lines, and far cheaper than uuid4 (no system call).
    return f"{random.getrandbits(128):032x}"
