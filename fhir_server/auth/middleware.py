"""Pure ASGI: authenticate the bearer token of every non-public request (401 otherwise), and
guard each route with the access it needs (403 naming the missing scope)."""

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..api import ehealth
from ..api.errors import render_fhir_error
from ..resources.outcome import FhirError
from .policy import PUBLIC_PATHS, route_access
from .scopes import Access, SmartAccess
from .tokens import UNRESTRICTED, InvalidToken, Principal, TokenVerifier

log = logging.getLogger("fhir_server")
REALM = 'Bearer realm="fhir-server"'


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").strip().partition(" ")
            return token.strip() if kind.lower() == "bearer" and token.strip() else None
    return None


def authenticate(scope: Scope, verifier: TokenVerifier | None) -> Principal:
    """The caller of a non-public request; InvalidToken if its bearer token is missing or
    not accepted. With no verifier (auth off) every caller is unrestricted."""
    if verifier is None:
        return UNRESTRICTED
    token = bearer_token(scope)
    if token is None:
        raise InvalidToken(ehealth.MISSING_TOKEN_MESSAGE)
    return verifier.verify(token)


class AuthenticationMiddleware:
    """Sets scope["auth"] to the caller's Principal, or answers 401."""

    def __init__(self, app: ASGIApp, verifier: TokenVerifier | None) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.verifier is None:
            scope["auth"] = UNRESTRICTED
        elif scope["path"] not in PUBLIC_PATHS:
            try:
                scope["auth"] = authenticate(scope, self.verifier)
            except InvalidToken as exc:
                token_sent = bearer_token(scope) is not None
                response = unauthorized(Request(scope), str(exc), token_sent)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def unauthorized(request: Request, message: str, token_sent: bool) -> Response:
    # RFC 6750 §3.1: no error attribute when the request carried no credentials.
    challenge = REALM
    if token_sent:
        challenge += f', error="invalid_token", error_description="{message}"'
    headers = {"WWW-Authenticate": challenge}
    if ehealth.is_adapter_path(request.url.path):
        # The eHealth gateway's own texts; the reason stays in WWW-Authenticate.
        text = ehealth.INVALID_TOKEN_MESSAGE if token_sent else ehealth.MISSING_TOKEN_MESSAGE
        response: Response = ehealth.access_denied(request, text)
        response.headers.update(headers)
        return response
    error = FhirError.of(401, "login", message)
    error.headers.update(headers)
    return render_fhir_error(request, error)


class RequireAccess:
    """Wraps one route's ASGI app: the caller's scopes must grant the route's access."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access
        # Callers come back with the same scope sets: each is judged once (bounded below).
        self._allowed: dict[frozenset[str], bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.permits(scope.get("auth")):
            await self.app(scope, receive, send)
            return
        response = forbidden(Request(scope), self.access)
        await response(scope, receive, send)

    def permits(self, principal: Principal | None) -> bool:
        return principal is None or principal.unrestricted or self._allows(principal.scopes)

    def _allows(self, scopes: frozenset[str]) -> bool:
        allowed = self._allowed.get(scopes)
        if allowed is None:
            if len(self._allowed) >= 1024:
                self._allowed.clear()
            allowed = self._allowed[scopes] = self.access.allows(scopes)
        return allowed


def forbidden(request: Request, access: Access) -> Response:
    scope = access.scope if isinstance(access, SmartAccess) else access.missing
    headers = {"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{scope}"'}
    if ehealth.is_adapter_path(request.url.path):
        response: Response = ehealth.forbidden(request, access.missing)
        response.headers.update(headers)
        return response
    error = FhirError.of(403, "forbidden", f"This request needs the scope {access.missing}")
    error.headers.update(headers)
    return render_fhir_error(request, error)


def guard_routes(routes: list[BaseRoute]) -> None:
    """Wrap every non-public route in RequireAccess (LookupError for an unclassified one)."""
    for route in routes:
        access = route_access(route)
        if access is not None and isinstance(route, Route):
            route.app = RequireAccess(route.app, access)
