"""Generated input against every endpoint of /openapi.json: never a 5xx, every error in the
API's own shape (OperationOutcome, the eHealth envelope on adapter paths, OAuth error JSON
under /oauth2), and a rejected write leaves the store as it was."""

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_server.api.ehealth import ADAPTER_PREFIXES
from fhir_server.api.openapi import openapi_document
from fhir_server.search.query import JobQuery
from fhir_server.storage.base import JobStore

from .auth_helpers import JOB_ID, owned_job
from .conftest import ADMIN_HEADERS, bearer, make_job

HOST = "http://testserver"
OPERATIONS = [
    (method.upper(), path, operation)
    for path, operations in openapi_document()["paths"].items()
    for method, operation in operations.items()
]
WRITES = {"POST", "PUT", "DELETE"}
WITH_PARAMETERS = [(m, p, o) for m, p, o in OPERATIONS if o.get("parameters")]

# Text is drawn from all of Unicode (every code point but surrogates). Numbers get their own
# strategy, since random text is seldom only digits: ASCII digits mixed with every other
# character str.isdigit() accepts, digits of every script ('٣', '𝟗') and others ('²', '①').
text = st.text(st.characters(codec="utf-8"), max_size=40)
NOT_DECIMAL_DIGITS = [c for c in map(chr, range(0x110000)) if c.isdigit() and not c.isdecimal()]
digits = (
    st.sampled_from("0123456789")
    | st.characters(categories=["Nd"])
    | st.sampled_from(NOT_DECIMAL_DIGITS)
)
numbers = st.text(digits, min_size=1, max_size=6)
ids = st.one_of(
    st.sampled_from([JOB_ID, "owned-by-bob", "missing", "1", "..", "a" * 65]),
    numbers,
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=70),
)
values = st.one_of(
    st.sampled_from(["accepted", "completed", "ge2026-01-01", "$ne", "' OR 1=1 --", "%", ""]),
    numbers,
    text,
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
    | numbers,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=20,
)
job_like = st.fixed_dictionaries(
    {"resourceType": st.just("AsyncJob")},
    optional={
        "id": ids,
        "status": st.sampled_from(["accepted", "completed", "error", "cancelled", "done"])
        | json_values,
        "requestTime": st.sampled_from(["2026-01-01T00:00:00Z", "yesterday"]) | json_values,
        "request": st.sampled_from(["https://example.org/$export"]) | json_values,
        "type": values | json_values,
        "output": json_values,
        "meta": json_values,
    },
)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


bodies = st.one_of(
    st.none(),
    job_like.map(dumps),
    json_values.map(dumps),
    st.binary(max_size=200),
)
content_types = st.sampled_from(
    [
        "application/fhir+json",
        "application/json",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/fhir+json; charset=latin-1",
        None,
    ]
)
credentials = st.sampled_from(
    [
        ADMIN_HEADERS,
        bearer("alice", "system/AsyncJob.cruds job:read composition:read"),
        bearer("alice", "system/AsyncJob.rs"),
        {"Authorization": "Bearer garbage"},
        {},
    ]
)


async def snapshot(store: JobStore) -> list[tuple[str, int]]:
    live = await store.search(JobQuery(limit=10_000))
    versions = [(r.id, r.version) for r in live]
    for job_id in (JOB_ID, "owned-by-bob"):
        versions += [(f"history:{job_id}", len(await store.history(job_id)))]
    return sorted(versions)


def is_adapter_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in ADAPTER_PREFIXES)


def assert_error_shape(path: str, response: httpx.Response) -> None:
    body = response.json()
    if path.startswith("/oauth2/"):
        assert set(body) == {"error", "error_description"}, body
        assert response.headers["cache-control"] == "no-store"
    elif is_adapter_path(path):
        assert set(body) == {"error", "meta"}, body
        assert body["meta"]["code"] == response.status_code
    else:
        assert body["resourceType"] == "OperationOutcome", body
        assert body["issue"], body


@pytest.mark.parametrize(
    ("method", "template", "operation"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS]
)
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_generated_requests_never_fail_the_server_or_change_it_when_rejected(
    client: httpx.AsyncClient,
    store: JobStore,
    method: str,
    template: str,
    operation: dict[str, Any],
    data: st.DataObject,
):
    if await store.get(JOB_ID) is None:
        await owned_job(store, "alice", output={"resourceType": "Parameters"})
        await owned_job(store, "bob", id="owned-by-bob")
    path = template
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            path = path.replace(f"{{{parameter['name']}}}", quote(data.draw(ids), safe=""))
    names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
    params = data.draw(
        st.lists(st.tuples(st.sampled_from(names) | text, values), max_size=5)
        if names
        else st.just([])
    )
    headers: dict[str, Any] = dict(data.draw(credentials))
    body = data.draw(bodies) if method in ("POST", "PUT") else None
    content_type = data.draw(content_types)
    if content_type is not None:
        headers["Content-Type"] = content_type
    if data.draw(st.booleans()):
        etag = data.draw(st.sampled_from(['W/"1"', 'W/"9"', "*", "junk"]) | numbers)
        headers["If-Match"] = etag.encode("utf-8")  # httpx sends str headers as ASCII only
    before = await snapshot(store)

    response = await client.request(
        method, HOST + path, params=params, content=body, headers=headers
    )

    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_error_shape(response.request.url.path, response)
        if method in WRITES:
            assert await snapshot(store) == before


@pytest.mark.parametrize(
    ("method", "template", "operation"),
    WITH_PARAMETERS,
    ids=[f"{m} {p}" for m, p, _ in WITH_PARAMETERS],
)
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_a_number_in_any_script_in_any_parameter_never_fails_the_server(
    client: httpx.AsyncClient,
    store: JobStore,
    method: str,
    template: str,
    operation: dict[str, Any],
    data: st.DataObject,
):
    """One parameter at a time (path, query or header) gets a number, the others a valid
    value, so the request reaches the code that reads that number."""
    if await store.get(JOB_ID) is None:
        await owned_job(store, "alice", output={"resourceType": "Parameters"})
    chosen = data.draw(st.sampled_from(operation["parameters"]))
    number = data.draw(numbers)
    path, params, headers = template, [], {}
    for parameter in operation["parameters"]:
        name, where = parameter["name"], parameter["in"]
        if where == "path":
            value = number if parameter is chosen else (JOB_ID if name == "id" else "1")
            path = path.replace(f"{{{name}}}", quote(value, safe=""))
        elif parameter is chosen and where == "query":
            params.append((name, number))
        elif parameter is chosen and where == "header":
            headers[name] = f'W/"{number}"'.encode()  # httpx sends str headers as ASCII only
    body = None
    if method == "PUT":
        body, headers["Content-Type"] = dumps(make_job(id=JOB_ID)), "application/fhir+json"
    before = await snapshot(store)

    response = await client.request(
        method, HOST + path, params=params, content=body, headers=headers
    )

    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_error_shape(response.request.url.path, response)
        if method in WRITES:
            assert await snapshot(store) == before


def test_every_endpoint_is_fuzzed():
    assert {(m, p) for m, p, _ in OPERATIONS} >= {
        ("POST", "/fhir/R4/AsyncJob"),
        ("PUT", "/fhir/R4/AsyncJob/{id}"),
        ("GET", "/Jobs/{id}"),
        ("GET", "/patients/composition/job/{id}"),
        ("POST", "/oauth2/token"),
    }
