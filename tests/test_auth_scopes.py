"""Authorization: SMART v1/v2 scopes on the FHIR routes, eHealth scopes on the adapter."""

import pytest

from fhir_server.api.routing import GuardedRoute
from fhir_server.auth.policy import interaction_access
from fhir_server.auth.scopes import smart_permissions
from fhir_server.resources.asyncjob import ASYNC_JOB
from fhir_server.storage.base import JobStore

from .auth_helpers import HOST, JOB_ID, PUBLIC_PATHS, app_routes, owned_job
from .conftest import MakeClient, make_job

FHIR_JSON = {"Content-Type": "application/fhir+json"}
JOB = f"AsyncJob/{JOB_ID}"
# (method, path under the FHIR base, the SMART permission letter it needs)
FHIR_ROUTES = [
    ("GET", "AsyncJob", "s"),
    ("POST", "AsyncJob/_search", "s"),
    ("GET", JOB, "r"),
    ("GET", f"{JOB}/_history", "r"),
    ("GET", f"{JOB}/_history/1", "r"),
    ("POST", "AsyncJob", "c"),
    ("PUT", JOB, "u"),
    ("DELETE", JOB, "d"),
    ("POST", f"{JOB}/$cancel", "u"),
    ("GET", f"job/{JOB_ID}/status", "r"),
    ("DELETE", f"job/{JOB_ID}/status", "u"),
]
# A scope and the letters it grants on AsyncJob.
SCOPES = {
    "system/AsyncJob.rs": "rs",
    "system/AsyncJob.read": "rs",
    "system/AsyncJob.r": "r",
    "system/AsyncJob.s": "s",
    "system/*.rs": "rs",
    "user/AsyncJob.rs": "rs",
    "user/AsyncJob.read": "rs",
    "system/AsyncJob.cud": "cud",
    "system/AsyncJob.write": "cud",
    "user/*.write": "cud",
    "system/AsyncJob.c": "c",
    "system/AsyncJob.cruds": "cruds",
    "system/AsyncJob.*": "cruds",
    "user/*.*": "cruds",
    "system/*.*": "cruds",
    "patient/AsyncJob.rs": "",
    "patient/*.*": "",
    "system/Patient.rs": "",
    "system/AsyncJob.sr": "",  # v2 letters come in the order c r u d s
    "job:read": "",
}
CASES = [
    pytest.param(method, path, scope, letter in granted, id=f"{method} {path} {scope}")
    for method, path, letter in FHIR_ROUTES
    for scope, granted in SCOPES.items()
]


def body_for(method: str, path: str) -> dict[str, object] | None:
    if method == "POST" and path == "AsyncJob":
        return make_job(id=None)
    if method == "PUT":
        return make_job(id=JOB_ID)
    return None


@pytest.mark.parametrize(("scope", "granted"), SCOPES.items())
def test_smart_scope_grants_these_permissions(scope: str, granted: str):
    assert smart_permissions(scope, "AsyncJob") == granted


@pytest.mark.parametrize(("method", "path", "scope", "allowed"), CASES)
async def test_fhir_route_answers_403_forbidden_unless_the_scope_grants_it(
    make_client: MakeClient, store: JobStore, method: str, path: str, scope: str, allowed: bool
):
    await owned_job(store, "svc")
    async with make_client(sub="svc", scope=scope) as http:
        response = await http.request(method, path, json=body_for(method, path), headers=FHIR_JSON)
    if allowed:
        assert response.status_code not in (401, 403), response.text
    else:
        assert response.status_code == 403
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "forbidden"
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


async def test_403_names_the_scope_that_is_missing(make_client: MakeClient, store: JobStore):
    async with make_client(sub="svc", scope="system/AsyncJob.rs") as http:
        response = await http.post("AsyncJob", json=make_job(id=None), headers=FHIR_JSON)
    assert "system/AsyncJob.cud" in response.json()["issue"][0]["diagnostics"]
    assert 'scope="system/AsyncJob.cud"' in response.headers["www-authenticate"]


async def test_forbidden_write_changes_nothing(make_client: MakeClient, store: JobStore):
    await owned_job(store, "svc")
    async with make_client(sub="svc", scope="system/AsyncJob.read") as http:
        await http.delete(JOB)
    assert len(await store.history(JOB_ID)) == 1


ADAPTER_CASES = [
    ("/Jobs", "job:read"),
    ("/api/jobs", "job:read"),
    ("/patients/composition/job", "composition:read"),
    ("/api/patients/composition/job", "composition:read"),
]


@pytest.mark.parametrize(("prefix", "scope"), ADAPTER_CASES)
async def test_adapter_route_answers_with_its_ehealth_scope(
    make_client: MakeClient, store: JobStore, prefix: str, scope: str
):
    await owned_job(store, "svc")
    async with make_client(sub="svc", scope=scope) as http:
        response = await http.get(f"{HOST}{prefix}/{JOB_ID}")
    assert response.status_code == 200


HELD_SCOPES = ["system/*.*", "job:read composition:write", "composition:read", "job:write"]


@pytest.mark.parametrize(
    ("prefix", "scope", "held"),
    [
        (prefix, scope, held)
        for prefix, scope in ADAPTER_CASES
        for held in HELD_SCOPES
        if scope not in held.split()
    ],
)
async def test_adapter_route_without_its_scope_is_403_forbidden_naming_it(
    make_client: MakeClient, store: JobStore, prefix: str, scope: str, held: str
):
    await owned_job(store, "svc")
    async with make_client(sub="svc", scope=held) as http:
        response = await http.get(f"{HOST}{prefix}/{JOB_ID}")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["type"] == "forbidden"
    assert error["message"] == (
        f"Your scope does not allow to access this resource. Missing allowances: {scope}"
    )


async def test_scopes_may_come_as_an_scp_list(make_client: MakeClient, store: JobStore):
    await owned_job(store, "svc")
    async with make_client(sub="svc", scope=None, scp=["job:read"]) as http:
        assert (await http.get(f"{HOST}/Jobs/{JOB_ID}")).status_code == 200


def test_an_interaction_the_kind_does_not_declare_has_no_access_rule():
    with pytest.raises(LookupError, match=r"\$new-operation"):
        interaction_access(ASYNC_JOB, "$new-operation")


async def test_every_route_of_the_app_is_guarded(make_client: MakeClient):
    http = make_client()
    app = http._transport.app  # type: ignore[attr-defined]
    await http.aclose()

    for route in app_routes(app):
        if getattr(route, "websocket", False):
            # The subscriptions' socket: each bind is authorized by its binding token
            # (tests/test_subscriptions.py), not by a bearer token on the upgrade.
            assert route.path == "/ws/subscriptions-r4"
            continue
        assert isinstance(route, GuardedRoute), route.path
        assert (route.template in PUBLIC_PATHS) == (route.access is None), route.template
