"""Routes that carry their own access rule, and the errors a refused request gets.

The request pipeline (api/pipeline.py) authenticates every request before routing and notes
the caller, or why its token was refused, in the ASGI scope. The route then decides: a public
route (access None) ignores it; any other answers 401 without an accepted token and 403 when
the token lacks the route's scope. The errors are raised inside the endpoint, so whichever
application owns the route renders them (an OperationOutcome, or the eHealth envelope).
"""

from collections.abc import Awaitable, Callable, Collection

from starlette.convertors import StringConvertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from ..auth.scopes import Access
from ..auth.tokens import Principal
from ..resources.outcome import FhirError, Issue

Endpoint = Callable[[Request], Awaitable[Response]]
REALM = 'Bearer realm="fhir-server"'
# Keys of the ASGI scope the pipeline fills in for the routes.
AUTH = "auth"  # the caller's Principal (as Starlette's AuthenticationMiddleware names it)
AUTH_ERROR = "fhir_server.auth_error"  # why the token was refused, when it was
REJECTION = "fhir_server.rejection"  # an error that refuses the request whatever the route
ROUTE = "fhir_server.route"  # the matched route's path template, for logs and metrics
MISSING_TOKEN = "Authorization header is not set or doesn't contain Bearer token"


class NotAuthenticated(FhirError):
    """401: no bearer token, or one that was not accepted."""

    def __init__(self, reason: str, token_sent: bool) -> None:
        super().__init__([Issue("login", reason)])
        self.token_sent = token_sent
        # RFC 6750 §3.1: no error attribute when the request carried no credentials.
        challenge = REALM
        if token_sent:
            challenge += f', error="invalid_token", error_description="{reason}"'
        self.headers["WWW-Authenticate"] = challenge


class AccessDenied(FhirError):
    """403: the token does not grant what the route needs."""

    def __init__(self, access: Access) -> None:
        super().__init__([Issue("forbidden", f"This request needs the scope {access.missing}")])
        self.access = access
        scope = access.scope
        self.headers["WWW-Authenticate"] = f'{REALM}, error="insufficient_scope", scope="{scope}"'


class ReadIdConvertor(StringConvertor):
    """A path segment that is not `_history`: [type]/_history is the type's history, so the
    read can be tried first without taking it."""

    regex = "(?!_history$)[^/]+"


READ_ID = "read_id"
register_url_convertor(READ_ID, ReadIdConvertor())


class GuardedRoute(Route):
    """A route and what a caller needs to use it: an Access, or None for a public route."""

    def __init__(
        self,
        path: str,
        endpoint: Endpoint,
        *,
        methods: Collection[str],
        access: Access | None,
        name: str | None = None,
        template: str | None = None,
    ) -> None:
        self.access = access
        # The path as logs and metrics name it (under a Mount, the path includes its prefix).
        self.template = template or path
        self._allowed: dict[frozenset[str], bool] = {}
        self.handler = endpoint  # the endpoint unguarded: call admit() first
        super().__init__(path, self._guarded(endpoint), methods=list(methods), name=name)

    def _guarded(self, endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            self.admit(request.scope)
            return await endpoint(request)

        guarded.__name__ = getattr(endpoint, "__name__", "endpoint")
        return guarded

    def admit(self, scope: Scope) -> None:
        """Name the route for logs and metrics, then raise whatever refuses the request: a
        refusal of the pipeline's (body size); for a route that is not public, no accepted
        token (NotAuthenticated) or one without the route's scope (AccessDenied)."""
        scope[ROUTE] = self.template
        rejection = scope.get(REJECTION)
        if rejection is not None:
            raise rejection
        access = self.access
        if access is None:
            return
        principal: Principal | None = scope.get(AUTH)
        if principal is None:
            raise scope.get(AUTH_ERROR) or NotAuthenticated(MISSING_TOKEN, False)
        if principal.unrestricted:
            return
        # Callers come back with the same scope sets: each is judged once (bounded).
        allowed = self._allowed.get(principal.scopes)
        if allowed is None:
            if len(self._allowed) >= 1024:
                self._allowed.clear()
            allowed = self._allowed[principal.scopes] = access.allows(principal.scopes)
        if not allowed:
            raise AccessDenied(access)


def public(path: str, endpoint: Endpoint, methods: Collection[str] = ("GET",)) -> GuardedRoute:
    return GuardedRoute(path, endpoint, methods=methods, access=None)
