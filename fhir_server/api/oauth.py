"""How clients get tokens: SMART discovery (GET [base]/.well-known/smart-configuration, public)
and the token endpoint of SMART Backend Services (POST /oauth2/token, public).

The token endpoint is a mounted sub-application with its own error rendering: whatever goes
wrong under /oauth2 (a refused assertion, a body too large, an unknown path, the database) is
answered as RFC 6749 §5.2 error JSON, never as an OperationOutcome. Its answers carry
`Cache-Control: no-store` (§5.1): a token must not be kept by any cache.
"""

import logging
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from ..auth.backend_services import OAuthError, TokenIssuer
from ..auth.clients import ALGORITHMS
from ..auth.setup import no_tokens_reason
from ..observability.request_ids import request_id_of
from ..resources.kinds import ResourceKind
from ..resources.outcome import FhirError
from .ehealth import AdapterMount
from .errors import exception_handlers
from .http_status import status_of
from .routing import AUTH, GuardedRoute
from .urls import TOKEN_PATH, token_url

log = logging.getLogger("fhir_server")
TOKEN_PREFIX = TOKEN_PATH.rsplit("/", 1)[0]
FORM = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# RFC 6749 §5.2: a failed client authentication may be a 401; every other error is a 400.
ERROR_STATUS = {"invalid_client": 401}


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def no_store(request: Request) -> dict[str, str]:
    """The headers that keep caches from keeping an answer: Cache-Control comes from the
    pipeline when the request carried an accepted token (api/pipeline.py), else from here."""
    principal = request.scope.get(AUTH)
    if principal is not None and not principal.unrestricted:
        return {"Pragma": "no-cache"}
    return NO_STORE


def oauth_error(request: Request, status: int, error: str, description: str) -> Response:
    log.info(
        "%s %s -> %d %s: %s [request_id=%s]",
        request.method,
        request.url.path,
        status,
        error,
        description[:300],
        request_id_of(request.scope),
    )
    body = {"error": error, "error_description": description}
    return JsonResponse(body, status, no_store(request))


def render_oauth_error(request: Request, error: FhirError) -> Response:
    """Any error under /oauth2, as OAuth error JSON (its status and headers kept)."""
    status = status_of(error)
    code = {500: "server_error", 503: "temporarily_unavailable"}.get(status, "invalid_request")
    response = oauth_error(request, status, code, str(error))
    response.headers.update(error.headers)
    return response


async def _form(request: Request) -> dict[str, str]:
    """The request's form parameters (RFC 6749 §3.2: form-encoded, each at most once)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM:
        raise OAuthError("invalid_request", f"Send the token request as {FORM}")
    try:
        text = (await request.body()).decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "The form is not valid UTF-8") from None
    form = dict(pairs)
    if len(form) != len(pairs):
        raise OAuthError("invalid_request", "A parameter is sent more than once")
    return form


async def token(request: Request) -> Response:
    issuer: TokenIssuer | None = request.app.state.token_issuer
    try:
        form = await _form(request)
        if issuer is None:
            raise OAuthError("unsupported_grant_type", no_tokens_reason(request.app.state.settings))
        granted = await issuer.issue(form, token_url(request))
    except OAuthError as exc:
        return oauth_error(request, ERROR_STATUS.get(exc.error, 400), exc.error, exc.description)
    body = {
        "access_token": granted.token,
        "token_type": "bearer",
        "expires_in": granted.expires_in,
        "scope": granted.scope,
    }
    return JsonResponse(body, 200, no_store(request))


def token_mount() -> AdapterMount:
    """/oauth2: the token endpoint, every other path under it answered in OAuth's shape."""
    route = GuardedRoute("/token", token, methods=["POST"], access=None, template=TOKEN_PATH)
    app = Starlette(routes=[route], exception_handlers=exception_handlers(render_oauth_error))
    return AdapterMount(TOKEN_PREFIX, app=app)


def supported_scopes(kinds: tuple[ResourceKind, ...], admin_scope: str) -> list[str]:
    """Examples of what a client may ask for (SMART v2 letters and their v1 words)."""
    scopes = [f"system/{kind.type}.{p}" for kind in kinds for p in ("rs", "cruds", "read", "*")]
    scopes += ["system/*.rs", "system/*.cruds", admin_scope, "job:read", "composition:read"]
    return list(dict.fromkeys(scopes))


async def smart_configuration(request: Request) -> Response:
    """SMART App Launch 2.x discovery, for Backend Services clients: where and how to get a
    token."""
    state = request.app.state
    document = {
        "token_endpoint": token_url(request),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "scopes_supported": supported_scopes(state.kinds, state.settings.admin_scope),
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    }
    return JsonResponse(document)
