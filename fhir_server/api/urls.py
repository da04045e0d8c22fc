"""Where the FHIR API lives: its base path, and the URLs of links and of the request itself.

With a public base URL configured (FHIR_SERVER_PUBLIC_BASE_URL) every URL is built on it and
nothing the client sent (the Host header) goes into one. Without it, URLs follow the request
as the client addressed it: fine behind a proxy that sets Host, or on a developer's machine.
"""

from typing import Any

from starlette.requests import Request

BASE_PATH = "/fhir/R4"
STATUS_PATH = f"{BASE_PATH}/job/{{id}}/status"
# At the server's root, where @medplum/core looks for it by default (baseUrl + oauth2/token).
TOKEN_PATH = "/oauth2/token"
SMART_CONFIGURATION_PATH = f"{BASE_PATH}/.well-known/smart-configuration"
_BASES: dict[tuple[Any, ...], str] = {}


def public_base_url(request: Request) -> str | None:
    """The configured public URL of the app's root (no trailing slash), if any."""
    state = getattr(request.scope.get("app"), "state", None)  # none: another app's request
    url: str | None = getattr(state, "public_base_url", None)
    return url


def fhir_base(request: Request) -> str:
    """The FHIR base URL, for fullUrl and links."""
    public = public_base_url(request)
    if public is not None:
        return public + BASE_PATH
    scope = request.scope
    key = (
        scope.get("scheme"),
        request.headers.get("host"),
        scope.get("app_root_path", scope.get("root_path")),
        scope.get("server"),
    )
    base = _BASES.get(key)
    if base is None:  # building request.base_url costs more than the rest of a read
        if len(_BASES) >= 256:  # the Host header is the client's: keep the cache bounded
            _BASES.clear()
        base = _BASES[key] = str(request.base_url).rstrip("/") + BASE_PATH
    return base


def token_url(request: Request) -> str:
    """Where clients get tokens: the identity provider's token endpoint when one is
    configured, else this server's own. A client's assertion is addressed (aud) to it."""
    settings = getattr(getattr(request.scope.get("app"), "state", None), "settings", None)
    configured: str | None = getattr(settings, "token_endpoint", None)
    return configured or fhir_base(request).removesuffix(BASE_PATH) + TOKEN_PATH


def request_url(request: Request) -> str:
    """The URL the request was sent to; its raw path keeps its percent-encoding."""
    scope = request.scope
    raw: bytes | None = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope["path"]
    public = public_base_url(request)
    if public is None:
        return str(request.url.replace(path=path) if raw else request.url)
    root: str = scope.get("app_root_path", scope.get("root_path", ""))
    query = scope.get("query_string", b"").decode("latin-1")
    return public + path.removeprefix(root) + (f"?{query}" if query else "")


def status_url(fhir_base: str, job_id: str) -> str:
    """The Content-Location a kick-off answers with, under the FHIR base URL."""
    return f"{fhir_base}/job/{job_id}/status"


def websocket_url(request: Request, path: str) -> str:
    """The URL of a WebSocket served at `path` of the server's root (ws:// or wss://)."""
    root = fhir_base(request).removesuffix(BASE_PATH)
    return root.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + path
