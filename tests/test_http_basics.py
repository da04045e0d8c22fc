"""CapabilityStatement, content negotiation, health, and errors outside the routes."""

import httpx
import orjson
import pytest

from fhir_server.resources.asyncjob import SEARCH_PARAMETERS
from fhir_server.storage.base import JobStore

from .conftest import put_job


async def test_metadata_is_a_capability_statement_for_fhir_4_0_1(client: httpx.AsyncClient):
    response = await client.get("metadata")
    assert response.status_code == 200
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert "json" in statement["format"]
    resource = statement["rest"][0]["resource"][0]
    assert resource["type"] == "AsyncJob"
    codes = {i["code"] for i in resource["interaction"]}
    assert {"read", "vread", "history-instance", "search-type"} <= codes


async def test_metadata_lists_the_cancel_operation(client: httpx.AsyncClient):
    resource = (await client.get("metadata")).json()["rest"][0]["resource"][0]
    assert [op["name"] for op in resource["operation"]] == ["cancel"]


async def test_metadata_lists_every_search_parameter(client: httpx.AsyncClient):
    resource = (await client.get("metadata")).json()["rest"][0]["resource"][0]
    listed = {p["name"]: p["type"] for p in resource["searchParam"]}
    assert listed == {p.name: p.type for p in SEARCH_PARAMETERS}


async def test_fhir_json_is_the_default_without_accept(client: httpx.AsyncClient):
    response = await client.get("metadata", headers={"Accept": ""})
    assert response.headers["content-type"] == "application/fhir+json; charset=utf-8"


async def test_accept_application_json(client: httpx.AsyncClient):
    response = await client.get("metadata", headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"


async def test_browser_accept_header_gets_json(client: httpx.AsyncClient):
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = await client.get("metadata", headers={"Accept": accept})
    assert response.status_code == 200


@pytest.mark.parametrize("fmt", ["json", "application/fhir+json", "application/json"])
async def test_format_json(client: httpx.AsyncClient, fmt: str):
    assert (await client.get("metadata", params={"_format": fmt})).status_code == 200


@pytest.mark.parametrize("fmt", ["xml", "application/fhir+xml", "turtle"])
async def test_format_other_than_json_is_406(client: httpx.AsyncClient, fmt: str):
    response = await client.get("metadata", params={"_format": fmt})
    assert response.status_code == 406
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_accept_xml_only_is_406(client: httpx.AsyncClient):
    response = await client.get("metadata", headers={"Accept": "application/fhir+xml"})
    assert response.status_code == 406
    assert response.json()["issue"][0]["code"] == "not-supported"


async def test_pretty_indents(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    compact = await client.get("AsyncJob/job-1")
    pretty = await client.get("AsyncJob/job-1", params={"_pretty": "true"})
    assert b"\n" not in compact.content
    assert b'\n  "resourceType"' in pretty.content
    assert pretty.json() == compact.json()


async def test_pretty_search_indents_the_stored_resources_too(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1")
    compact = await client.get("AsyncJob", params={"_id": "job-1"})
    pretty = await client.get("AsyncJob", params={"_id": "job-1", "_pretty": "true"})
    assert b"\n" not in compact.content
    # The entry's resource is indented at its depth, not embedded on one line.
    assert b'\n        "resourceType": "AsyncJob"' in pretty.content
    assert pretty.json()["entry"] == compact.json()["entry"]


async def test_read_answers_the_stored_json_byte_for_byte(
    client: httpx.AsyncClient, store: JobStore
):
    record = await put_job(store, id="job-1")
    response = await client.get("AsyncJob/job-1")
    assert response.content == orjson.dumps(record.resource)


async def test_other_resource_types_are_not_supported(client: httpx.AsyncClient):
    for path in ["Patient/1", "Patient", "Observation?code=x"]:
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["issue"][0]["code"] == "not-supported"


async def test_unsupported_method_is_405_operation_outcome(client: httpx.AsyncClient):
    response = await client.patch("AsyncJob/job-1", content=b"{}")
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"
    response = await client.post("metadata")
    assert response.status_code == 405


async def test_unknown_path_is_an_operation_outcome_not_html(client: httpx.AsyncClient):
    response = await client.get("http://testserver/nowhere")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_healthz(client: httpx.AsyncClient):
    response = await client.get("http://testserver/healthz")
    assert response.status_code == 200


async def test_readyz_when_storage_answers(client: httpx.AsyncClient):
    response = await client.get("http://testserver/readyz")
    assert response.status_code == 200


async def test_unexpected_errors_do_not_leak_internals(
    client: httpx.AsyncClient, store: JobStore, monkeypatch: pytest.MonkeyPatch
):
    async def broken(job_id: str) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(store, "get", broken)
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    transport.raise_app_exceptions = False
    response = await client.get("AsyncJob/job-1")
    assert response.status_code == 500
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "secret" not in response.text and "Traceback" not in response.text
