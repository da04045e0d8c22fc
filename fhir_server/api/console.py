"""The job console: a browser page the server serves itself, at /console.

The page and its scripts are static files shipped in the package (api/console/), public: the
shell holds no data. Everything it shows comes from the public API, with the bearer token
the user gives it, so it can show and do exactly what that token may. Its answers carry a
strict Content-Security-Policy (scripts and styles from these files only, no inline script,
connections to this origin only, never framed).
"""

from functools import lru_cache
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .http_status import ProtocolError
from .routing import AUTH, AUTH_ERROR, MISSING_TOKEN, NotAuthenticated

CONSOLE_PATH = "/console"
ASSET_PATH = CONSOLE_PATH + "/{name}"
ASSETS = files(__package__) / "console"
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# 'self' in connect-src covers ws: and wss: to this origin too (CSP Level 3), which the
# Subscription WebSocket will need.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # for browsers older than frame-ancestors
    "Referrer-Policy": "no-referrer",
    # The files change with the package: revalidate rather than run a stale script.
    "Cache-Control": "no-cache",
}


@lru_cache(maxsize=1)
def _assets() -> dict[str, tuple[bytes, str]]:
    """Every file of the console by name, with its media type: read once. Only these names
    are served (no path is ever built from the request)."""
    served = {}
    for entry in ASSETS.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _MEDIA_TYPES:
            served[entry.name] = (entry.read_bytes(), _MEDIA_TYPES[suffix])
    return served


def _file(name: str) -> Response:
    found = _assets().get(name)
    if found is None:
        raise ProtocolError(404, "not-found", f"No endpoint at {CONSOLE_PATH}/{name}")
    body, media_type = found
    return Response(body, media_type=media_type, headers=SECURITY_HEADERS)


async def page(request: Request) -> Response:
    """GET /console: the page (public: it holds no data)."""
    return _file("index.html")


async def asset(request: Request) -> Response:
    """GET /console/{name}: one of the page's scripts or styles."""
    return _file(request.path_params["name"])


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


async def root(request: Request) -> Response:
    """GET /: a browser (it asks for text/html) is sent to the console; any other client
    gets what an unknown path answers (401 without a token, else 404), as before."""
    if wants_html(request):
        return RedirectResponse(CONSOLE_PATH, 303, headers=SECURITY_HEADERS)
    if request.scope.get(AUTH) is None:
        raise request.scope.get(AUTH_ERROR) or NotAuthenticated(MISSING_TOKEN, False)
    raise ProtocolError(404, "not-found", "No endpoint at /")
