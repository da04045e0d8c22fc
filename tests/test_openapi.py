"""/openapi.json: public, and it describes every route of the app."""

import httpx

from fhir_server.api.openapi import openapi_document
from fhir_server.app import create_app
from fhir_server.config import Settings

from .auth_helpers import PUBLIC_PATHS, app_routes
from .conftest import MakeClient

HOST = "http://testserver"


def test_every_route_of_the_app_is_in_the_document(settings: Settings):
    paths = openapi_document()["paths"]
    for route in app_routes(create_app(settings)):
        for method in (route.methods or set()) - {"HEAD"}:
            assert method.lower() in paths.get(route.template, {}), f"{method} {route.template}"


def test_every_operation_in_the_document_is_a_route_of_the_app(settings: Settings):
    served = {
        (method.lower(), route.template)
        for route in app_routes(create_app(settings))
        for method in route.methods or ()
    }
    for path, operations in openapi_document()["paths"].items():
        for method in operations:
            assert (method, path) in served


def test_protected_operations_say_which_scope_they_need():
    for path, operations in openapi_document()["paths"].items():
        for operation in operations.values():
            if path in PUBLIC_PATHS:
                assert operation["security"] == []
            else:
                assert operation["security"] == [{"bearer": []}]
                assert operation["description"].startswith("Needs scope ")


def test_protected_job_operations_list_the_rate_limit_and_quota_answers():
    """A client reading the document learns of 429 (with Retry-After) and of the quota's 403."""
    for path, operations in openapi_document()["paths"].items():
        if path in PUBLIC_PATHS or not path.startswith(("/fhir/R4/AsyncJob", "/Jobs")):
            continue
        for operation in operations.values():
            throttled = operation["responses"]["429"]
            assert "Retry-After" in throttled["headers"], path
            assert "rate" in throttled["description"], path


async def test_document_is_served_without_a_token(make_client: MakeClient):
    async with make_client(headers={}) as http:
        response = await http.get(f"{HOST}/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == openapi_document()


def test_search_parameters_are_listed_for_search(settings: Settings):
    parameters = openapi_document()["paths"]["/fhir/R4/AsyncJob"]["get"]["parameters"]
    names = {p["name"] for p in parameters}
    assert {"status", "type", "_id", "_count", "_cursor"} <= names


async def test_document_is_valid_json_for_httpx(make_client: MakeClient):
    async with make_client(headers={}) as http:
        response: httpx.Response = await http.get(f"{HOST}/openapi.json")
    assert response.json()["openapi"].startswith("3.")
