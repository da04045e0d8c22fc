"""Where the FHIR API lives: its base path, and its base URL as a client addressed it."""

from typing import Any

from starlette.requests import Request

BASE_PATH = "/fhir/R4"
STATUS_PATH = f"{BASE_PATH}/job/{{id}}/status"
_BASES: dict[tuple[Any, ...], str] = {}


def fhir_base(request: Request) -> str:
    """The FHIR base URL as the client addressed it, for fullUrl and links."""
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


def status_url(fhir_base: str, job_id: str) -> str:
    """The Content-Location a kick-off answers with, under the FHIR base URL."""
    return f"{fhir_base}/job/{job_id}/status"
