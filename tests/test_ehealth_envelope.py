"""The eHealth envelope: meta, request ids, errors on adapter paths, auth shapes, scopes."""

import re
from typing import Any

import httpx
import orjson
import pytest
from starlette.requests import Request

from fhir_server.api import ehealth
from fhir_server.api.routing import AccessDenied, GuardedRoute, NotAuthenticated
from fhir_server.app import create_app
from fhir_server.auth.scopes import NamedScope
from fhir_server.config import Settings
from fhir_server.storage.base import JobRecord, JobStore, StoreUnavailable
from fhir_server.storage.mongo import MongoJobStore

from .conftest import ADMIN_HEADERS, put_job
from .ehealth_helpers import HOST, REQUEST_ID, get, meta

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


async def test_request_id_is_echoed_in_meta_and_header(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    response = await get(client, "/Jobs/job-1", **{"X-Request-ID": "mis-42:poll/7"})
    assert response.headers["x-request-id"] == "mis-42:poll/7"
    assert response.json()["meta"]["request_id"] == "mis-42:poll/7"


async def test_request_id_is_generated_when_not_sent(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    response = await client.get(f"{HOST}/Jobs/job-1")
    generated = response.headers["x-request-id"]
    assert GENERATED_ID.match(generated)
    assert response.json()["meta"]["request_id"] == generated


async def test_each_request_without_id_gets_its_own(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    first = await client.get(f"{HOST}/Jobs/job-1")
    second = await client.get(f"{HOST}/Jobs/job-1")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize("sent", [b"r" * 201, "запит-1".encode(), b"with space", b""])
async def test_unusable_request_id_is_replaced_by_a_generated_one(
    client: httpx.AsyncClient, store: JobStore, sent: bytes
):
    await put_job(store, id="job-1")
    response = await client.get(f"{HOST}/Jobs/job-1", headers={"X-Request-ID": sent})
    assert GENERATED_ID.match(response.headers["x-request-id"])
    assert response.json()["meta"]["request_id"] == response.headers["x-request-id"]


async def test_request_id_of_200_characters_is_echoed(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    response = await get(client, "/Jobs/job-1", **{"X-Request-ID": "r" * 200})
    assert response.json()["meta"]["request_id"] == "r" * 200


async def test_request_id_is_echoed_on_errors(client: httpx.AsyncClient):
    response = await get(client, "/Jobs/nope")
    assert response.headers["x-request-id"] == REQUEST_ID
    assert response.json()["meta"]["request_id"] == REQUEST_ID


async def test_meta_url_is_the_full_request_url_with_its_query(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1")
    response = await get(client, "/Jobs/job-1?trace=1&x=%20")
    assert response.json()["meta"]["url"] == f"{HOST}/Jobs/job-1?trace=1&x=%20"


async def test_meta_type_is_object(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    assert (await get(client, "/Jobs/job-1")).json()["meta"]["type"] == "object"


async def test_error_responses_carry_no_data(client: httpx.AsyncClient):
    response = await get(client, "/api/jobs/nope")
    assert set(response.json()) == {"error", "meta"}
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize("path", ["/Jobs/a/b", "/api/jobs", "/patients/composition/job/"])
async def test_no_route_under_an_adapter_prefix_is_404_not_found_in_the_envelope(
    client: httpx.AsyncClient, path: str
):
    response = await get(client, path)
    assert response.status_code == 404
    assert response.json() == {
        "error": {"type": "not_found", "message": f"No endpoint at {path}"},
        "meta": meta(404, path),
    }


async def test_wrong_method_on_an_adapter_path_is_405_in_the_envelope(client: httpx.AsyncClient):
    response = await client.post(f"{HOST}/Jobs/job-1", headers={"X-Request-ID": REQUEST_ID})
    assert response.status_code == 405
    assert "GET" in response.headers["allow"]
    assert response.json() == {
        "error": {
            "type": "method_not_allowed",
            "message": "Method POST is not allowed on /Jobs/job-1",
        },
        "meta": meta(405, "/Jobs/job-1"),
    }


async def test_paths_that_only_look_alike_keep_operation_outcomes(client: httpx.AsyncClient):
    response = await client.get(f"{HOST}/Jobsx/job-1")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_fhir_errors_stay_operation_outcomes(client: httpx.AsyncClient):
    response = await client.get(f"{HOST}/fhir/R4/AsyncJob/nope")
    assert response.json()["resourceType"] == "OperationOutcome"


class FailingStore(MongoJobStore):
    """A real store whose reads fail the way a broken backend would."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def get(self, job_id: str) -> JobRecord | None:
        raise self.error


def failing_client(error: Exception) -> httpx.AsyncClient:
    app = create_app(Settings(secret_key="test-secret"), store=FailingStore(error))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, headers=ADMIN_HEADERS)


async def test_unexpected_error_is_500_internal_error_without_a_stack_trace():
    async with failing_client(RuntimeError("secret detail in a traceback")) as http:
        response = await get(http, "/Jobs/job-1")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"type": "internal_error", "message": "Internal server error"},
        "meta": meta(500, "/Jobs/job-1"),
    }
    assert b"Traceback" not in response.content
    assert b"secret detail" not in response.content


async def test_unavailable_store_is_503_internal_error_with_retry_after():
    async with failing_client(StoreUnavailable("connection refused")) as http:
        response = await get(http, "/patients/composition/job/89678f60-4cdc-4fe3-ae83-e8b3ebd35c59")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == {
        "type": "internal_error",
        "message": "The database is unavailable; retry shortly",
    }


def adapter_request(path: str = "/Jobs/job-1", request_id: bytes | None = None) -> Request:
    headers = [(b"x-request-id", request_id)] if request_id else []
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "server": ("testserver", 80),
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
    }
    return Request(scope)


def test_access_denied_renders_401_in_the_envelope():
    error = NotAuthenticated("the token expired", token_sent=False)
    response = ehealth.error_envelope(adapter_request(request_id=REQUEST_ID.encode()), error)
    assert response.status_code == 401
    assert orjson.loads(response.body) == {
        "error": {
            "type": "access_denied",
            "message": "Authorization header is not set or doesn't contain Bearer token",
        },
        "meta": meta(401, "/Jobs/job-1"),
    }


def test_a_refused_token_is_named_invalid_whatever_the_reason():
    error = NotAuthenticated("Signature verification failed", token_sent=True)
    response = ehealth.error_envelope(adapter_request(), error)
    assert orjson.loads(response.body)["error"] == {
        "type": "access_denied",
        "message": "Invalid access token",
    }


@pytest.mark.parametrize("scope", ["job:read", "composition:read"])
def test_forbidden_renders_403_naming_the_missing_scope(scope: str):
    path = "/patients/composition/job/89678f60-4cdc-4fe3-ae83-e8b3ebd35c59"
    error = AccessDenied(NamedScope(scope))
    response = ehealth.error_envelope(adapter_request(path, REQUEST_ID.encode()), error)
    assert response.status_code == 403
    assert orjson.loads(response.body) == {
        "error": {
            "type": "forbidden",
            "message": "Your scope does not allow to access this resource. "
            f"Missing allowances: {scope}",
        },
        "meta": meta(403, path),
    }


def test_every_adapter_route_declares_its_required_scope():
    scopes = {
        route.template: route.access.scope
        for mount in ehealth.mounts()
        for route in mount.routes
        if isinstance(route, GuardedRoute) and isinstance(route.access, NamedScope)
    }
    assert scopes == {
        "/Jobs/{id}": "job:read",
        "/api/jobs/{id}": "job:read",
        "/patients/composition/job/{id}": "composition:read",
        "/api/patients/composition/job/{id}": "composition:read",
    }
