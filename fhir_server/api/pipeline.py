"""The one path every HTTP request takes, as a single pure-ASGI layer in front of the router.

In order: the request id (echoed in X-Request-ID), the bearer token (verified once, and
refused unread when longer than max_token_bytes; the caller, or why its token was refused, is
left in the scope for the route's access rule), the body's size and time limits, then the
route; whatever happens, one access-log line and the request metrics. An answer to a request
with an accepted token is one owner's data: `Cache-Control: no-store` keeps shared caches from
serving it to anyone else.
Nothing here decides an error's answer: a refusal is raised by the matched route
(api/routing.py), so the application owning that route answers in its own format.

The pipeline is the application's outermost layer (api/application.py). Its direct dispatch
skips Starlette's layers for the app's own routes: they are tried in the router's order and
the first full match is called with the app's exception handlers, as the router and
Starlette's exception layer would call it; an unexpected error is answered with the app's
handler for Exception and raised on for the server's log, as Starlette's error layer does.
Anything else (a Mount, a wrong method, no match) goes through those layers. A read costs
as much in them as in its handler.
"""

import asyncio
from collections.abc import Mapping, Sequence
from time import perf_counter
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..auth.tokens import UNRESTRICTED, InvalidToken, TokenVerifier
from ..observability.request_ids import REQUEST_ID_HEADER, assign_request_id
from ..observability.telemetry import Telemetry
from ..resources.outcome import FhirError
from .errors import ExceptionHandler
from .limits import body_too_large, body_too_slow
from .routing import (
    AUTH,
    AUTH_ERROR,
    MISSING_TOKEN,
    REJECTION,
    ROUTE,
    GuardedRoute,
    NotAuthenticated,
)
from .throttle import OwnerRateLimit

UNMATCHED = "unmatched"
NO_STORE = (b"cache-control", b"no-store")


class RequestPipeline:
    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: TokenVerifier | None,
        telemetry: Telemetry,
        max_body_bytes: int,
        body_timeout: float = 30.0,
        max_token_bytes: int = 4096,
        rate_limit: OwnerRateLimit | None = None,
        routes: Sequence[BaseRoute] = (),
        handlers: Mapping[Any, ExceptionHandler] | None = None,
        direct_dispatch: bool = True,
    ) -> None:
        self.app = app
        self.routes = routes if direct_dispatch else ()
        self.handlers = handlers or {}
        self.verifier = verifier
        self.telemetry = telemetry
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.max_token_bytes = max_token_bytes
        self.rate_limit = rate_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        # One pass over the headers for the few this layer reads (the first of each).
        authorization = incoming_id = length = None
        has_body = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value if authorization is None else authorization
            elif name == b"content-length":
                has_body, length = True, value if length is None else length
            elif name == b"transfer-encoding":
                has_body = True
            elif name == REQUEST_ID_HEADER:
                incoming_id = value if incoming_id is None else incoming_id
        request_id = assign_request_id(scope, incoming_id)
        header = (REQUEST_ID_HEADER, request_id.encode())
        status = 500  # until a response starts
        try:
            private = self._authenticate(scope, authorization)
            if private and self.rate_limit is not None:
                self._throttle(scope, self.rate_limit)
            if has_body:
                receive = self._limit_body(scope, receive, length)
            route = _direct_route(self.routes, scope)
            # Answers to an accepted token are the caller's own: no cache may keep them.
            added = (header, NO_STORE) if private else (header,)
            if route is not None:
                status = await _call(route, self.handlers, scope, receive, send, added)
            else:

                async def send_tagged(message: Message) -> None:
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                        message["headers"] = [*message.get("headers", ()), *added]
                    await send(message)

                await self.app(scope, receive, send_tagged)
        finally:
            seconds = perf_counter() - start
            route_name = scope.get(ROUTE, UNMATCHED)
            self.telemetry.record(
                request_id, scope["method"], route_name, scope["path"], status, seconds
            )

    def _authenticate(self, scope: Scope, value: bytes | None) -> bool:
        """scope["auth"]: the caller; or AUTH_ERROR: why the token was refused. True when a
        token was accepted."""
        if self.verifier is None:
            scope[AUTH] = UNRESTRICTED
            return False
        if value is not None and len(value) > self.max_token_bytes:
            # Refused unread: decoding and verifying cost in proportion to the length.
            reason = f"The Authorization header is longer than {self.max_token_bytes} bytes"
            scope[AUTH_ERROR] = NotAuthenticated(reason, token_sent=True)
            return False
        token = _bearer_token(value)
        if token is None:
            scope[AUTH_ERROR] = NotAuthenticated(MISSING_TOKEN, token_sent=False)
            return False
        try:
            scope[AUTH] = self.verifier.verify(token)
        except InvalidToken as exc:
            scope[AUTH_ERROR] = NotAuthenticated(str(exc), token_sent=True)
            return False
        return True

    def _throttle(self, scope: Scope, rate_limit: OwnerRateLimit) -> None:
        """Count the request against its owner's rates; over them, a rejection for the route
        to raise (so a 429 comes in the shape of the application that owns the path)."""
        principal = scope[AUTH]
        if principal.admin or principal.owner is None:
            return
        refusal = rate_limit.refusal(principal.owner)
        if refusal is not None:
            scope[REJECTION] = refusal

    def _limit_body(self, scope: Scope, receive: Receive, declared: bytes | None) -> Receive:
        """Refuse a declared Content-Length over the limit before anything reads the body;
        count the bytes of the others (chunked bodies too) as they arrive, and refuse a body
        still arriving body_timeout seconds after the request came in (408)."""
        limit = self.max_body_bytes
        if declared is not None:  # else a chunked body: only counted as it arrives
            if not declared.isdigit():  # bytes.isdigit() takes ASCII digits only
                scope[REJECTION] = FhirError.of("structure", "Content-Length is not a number")
            elif len(declared) > len(str(limit)) or int(declared) > limit:
                # the length first: int() refuses more than 4300 digits
                scope[REJECTION] = body_too_large(limit)
        received = 0
        complete = False
        deadline = asyncio.get_running_loop().time() + self.body_timeout

        async def counted() -> Message:
            nonlocal received, complete
            if complete:  # e.g. waiting for the client to disconnect: no deadline
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise body_too_slow(self.body_timeout) from None
            if message["type"] == "http.request":
                complete = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > limit:
                    raise body_too_large(limit)  # rendered by the route's application
            return message

        return counted


def _bearer_token(value: bytes | None) -> str | None:
    if value is None:
        return None
    kind, _, token = value.decode("latin-1").strip().partition(" ")
    return token.strip() if kind.lower() == "bearer" and token.strip() else None


def _direct_route(routes: Sequence[BaseRoute], scope: Scope) -> GuardedRoute | None:
    """The route the router would pick, if it is one of the app's own and fully matches;
    None to leave the request to the router."""
    for route in routes:
        if not isinstance(route, GuardedRoute):
            return None
        match, child_scope = route.matches(scope)
        if match is Match.FULL:
            scope.update(child_scope)
            return route
        if match is not Match.NONE:
            return None  # a wrong method: the router answers 405
    return None


async def _call(
    route: GuardedRoute,
    handlers: Mapping[Any, ExceptionHandler],
    scope: Scope,
    receive: Receive,
    send: Send,
    added: tuple[tuple[bytes, bytes], ...],
) -> int:
    """Answer with the route's endpoint and the `added` headers; its errors are answered by
    the app's handlers for them, and an unexpected one (answered by the handler for
    Exception) is raised on once answered. Returns the status sent."""
    request = Request(scope, receive, send)
    try:
        route.admit(scope)
        response = await route.handler(request)
    except Exception as exc:
        kind = _handled_kind(handlers, exc)
        if kind is None:
            raise
        response = await handlers[kind](request, exc)
        if kind is Exception:  # unexpected: raised on once answered, for the server's log
            await _answer(response, scope, receive, send, added)
            raise
    await _answer(response, scope, receive, send, added)
    return response.status_code


async def _answer(
    response: Response,
    scope: Scope,
    receive: Receive,
    send: Send,
    added: tuple[tuple[bytes, bytes], ...],
) -> None:
    response.raw_headers.extend(added)
    await response(scope, receive, send)


def _handled_kind(handlers: Mapping[Any, ExceptionHandler], exc: Exception) -> type | None:
    """The nearest of exc's classes the app has a handler for."""
    for kind in type(exc).__mro__:
        if kind in handlers:
            return kind
    return None
