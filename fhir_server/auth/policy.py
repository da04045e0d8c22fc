"""One table: what each route needs. Public paths need nothing; every other route must be in
ROUTE_ACCESS (FHIR) or carry `required_scope` (eHealth adapter), or the app refuses to start."""

from starlette.routing import BaseRoute, Route

from ..api.ehealth import EhealthRoute
from ..api.fhir import BASE_PATH
from ..api.status import STATUS_PATH
from .scopes import CREATE, DELETE, READ, SEARCH, UPDATE, Access, EhealthAccess

# Answered without a token (keep the list in docs/security.md in step).
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", f"{BASE_PATH}/metadata", "/openapi.json"}
)

_JOBS = f"{BASE_PATH}/AsyncJob"
ROUTE_ACCESS: dict[tuple[str, str], Access] = {
    ("GET", _JOBS): SEARCH,
    ("POST", f"{_JOBS}/_search"): SEARCH,
    ("GET", f"{_JOBS}/{{id}}"): READ,
    ("GET", f"{_JOBS}/{{id}}/_history"): READ,
    ("GET", f"{_JOBS}/{{id}}/_history/{{vid}}"): READ,
    ("POST", _JOBS): CREATE,
    ("PUT", f"{_JOBS}/{{id}}"): UPDATE,
    ("DELETE", f"{_JOBS}/{{id}}"): DELETE,
    # Both cancel paths change the job's status: an update, whatever the HTTP method.
    ("POST", f"{_JOBS}/{{id}}/$cancel"): UPDATE,
    ("GET", STATUS_PATH): READ,
    ("DELETE", STATUS_PATH): UPDATE,
}


def route_access(route: BaseRoute) -> Access | None:
    """What a route needs; None for a public one. LookupError for a route nobody classified."""
    if not isinstance(route, Route) or route.path in PUBLIC_PATHS:
        return None
    if isinstance(route, EhealthRoute):
        return EhealthAccess(route.required_scope)
    methods = sorted((route.methods or set()) - {"HEAD"})
    needs = {ROUTE_ACCESS.get((method, route.path)) for method in methods}
    if len(needs) != 1 or None in needs:
        raise LookupError(f"no access rule for {methods} {route.path}: add it to ROUTE_ACCESS")
    return needs.pop()
