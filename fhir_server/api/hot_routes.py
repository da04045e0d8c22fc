"""The busiest GET routes (read by id, search) answered without Starlette's per-request layers.

A read by id cost as much in the layers around its handler (error and exception middleware,
telemetry, authentication, body limit, router, the route's guard and wrappers: one ASGI call
each) as in the handler itself. For a plain GET on one of the leading routes this does the
same steps in one call, each with the code the layers use: the route's own matching and
access rule, the verifier, the request id, the access log and metrics, the error handlers.
Whatever it would answer differently (no or a bad token, a missing scope, a GET with a
body, an unexpected error) it leaves untouched, having sent nothing, to the whole stack.
"""

from os.path import commonpath
from time import perf_counter

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive, Scope, Send

from ..auth.middleware import RequireAccess, authenticate
from ..auth.tokens import InvalidToken, TokenVerifier
from ..observability.middleware import REQUEST_ID_HEADER, Telemetry, assign_request_id
from ..resources.outcome import FhirError
from ..storage.base import StoreUnavailable
from .errors import on_store_unavailable, render_fhir_error

# Headers that announce a body: such a GET goes through the body limit.
_BODY_HEADERS = frozenset({b"content-length", b"transfer-encoding"})


class HotRoutes:
    def __init__(
        self,
        routes: list[BaseRoute],
        count: int,
        verifier: TokenVerifier | None,
        telemetry: Telemetry,
    ) -> None:
        # Only leading routes: the router tries them first, so it would pick the same one.
        self.routes: list[tuple[Route, RequireAccess]] = []
        for route in routes[:count]:
            if not isinstance(route, Route) or not isinstance(route.app, RequireAccess):
                raise LookupError(f"{route!r} is no guarded route: guard the routes first")
            self.routes.append((route, route.app))
        self.verifier = verifier
        self.telemetry = telemetry
        # Every hot path contains this (a root_path may precede it): others skip the matching.
        prefixes = [route.path.split("{")[0] for route, _ in self.routes]
        self.common_part = commonpath(prefixes) if prefixes else ""

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer a plain GET on a hot route; False (nothing sent) for anything else."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return False
        if self.common_part not in scope["path"]:
            return False
        for route, guard in self.routes:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return await self._answer(route, guard, child_scope, scope, receive, send)
            if match is not Match.NONE:
                return False
        return False

    async def _answer(
        self,
        route: Route,
        guard: RequireAccess,
        child_scope: Scope,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> bool:
        start = perf_counter()
        for name, _ in scope["headers"]:
            if name in _BODY_HEADERS:
                return False
        try:
            principal = authenticate(scope, self.verifier)
        except InvalidToken:
            return False  # the authentication layer answers 401
        if not guard.permits(principal):
            return False  # the route's guard answers 403
        request_id = assign_request_id(scope)
        scope["auth"] = principal
        scope.update(child_scope)
        request = Request(scope, receive, send)
        response: Response
        try:
            response = await route.endpoint(request)
        except FhirError as error:
            response = render_fhir_error(request, error)
        except StoreUnavailable as exc:  # not retried below: that would wait twice as long
            response = await on_store_unavailable(request, exc)
        except Exception:
            return False  # the whole stack runs it again, and logs and answers the error
        status = 500  # until the response starts
        try:  # what Response.__call__ does (hot routes answer from memory), without a layer
            headers = [*response.raw_headers, (REQUEST_ID_HEADER, request_id.encode())]
            code = response.status_code
            await send({"type": "http.response.start", "status": code, "headers": headers})
            status = code
            await send({"type": "http.response.body", "body": response.body})
            if response.background is not None:
                await response.background()
        finally:
            seconds = perf_counter() - start
            self.telemetry.record(request_id, "GET", route.path, scope["path"], status, seconds)
        return True
