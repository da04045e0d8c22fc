"""Content negotiation on read: Accept, _format and _pretty (cached per Accept header)."""

import httpx
import pytest

from fhir_server.search.query import JobQuery
from fhir_server.storage.base import JobStore

from .conftest import put_job


@pytest.fixture(autouse=True)
async def job(store: JobStore) -> None:
    await put_job(store, id="job-1")


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        ("", "application/fhir+json"),
        ("application/json", "application/json"),
        ("text/html, */*;q=0.8", "application/fhir+json"),
    ],
)
async def test_accept_header_picks_the_json_media_type(
    client: httpx.AsyncClient, accept: str, media_type: str
):
    response = await client.get("AsyncJob/job-1", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{media_type}; charset=utf-8"


async def test_xml_only_accept_is_406(client: httpx.AsyncClient):
    for _ in range(2):  # the second answer comes after the first was (not) cached
        response = await client.get("AsyncJob/job-1", headers={"Accept": "application/fhir+xml"})
        assert response.status_code == 406
        assert response.json()["issue"][0]["code"] == "not-supported"


async def test_format_parameter_overrides_accept(client: httpx.AsyncClient):
    response = await client.get(
        "AsyncJob/job-1?_format=json", headers={"Accept": "application/fhir+xml"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fhir+json; charset=utf-8"


async def test_pretty_true_indents(client: httpx.AsyncClient):
    pretty = await client.get("AsyncJob/job-1?_pretty=true")
    compact = await client.get("AsyncJob/job-1")
    assert pretty.text.startswith("{\n  ")
    assert "\n" not in compact.text


@pytest.mark.parametrize(
    "accept",
    [
        "application/fhir+json; fhirVersion=4.0",
        "application/fhir+json;fhirVersion=4.0.1",
        "application/fhir+json; fhirVersion=3.0, application/fhir+json; fhirVersion=4.0",
    ],
)
async def test_fhir_version_4_0_is_answered(client: httpx.AsyncClient, accept: str):
    response = await client.get("AsyncJob/job-1", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fhir+json; charset=utf-8"


@pytest.mark.parametrize(
    "accept",
    [
        "application/fhir+json; fhirVersion=3.0",
        "application/json; fhirVersion=5.0",
        'application/fhir+json; fhirVersion="1.0", */*; fhirVersion=3.0',
    ],
)
async def test_another_fhir_version_is_406(client: httpx.AsyncClient, accept: str):
    """R4's versioning: a server that cannot answer in the asked fhirVersion says 406."""
    for _ in range(2):  # the second answer comes after the first was (not) cached
        response = await client.get("AsyncJob/job-1", headers={"Accept": accept})
        assert response.status_code == 406
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "not-supported"
        assert "fhirVersion=4.0" in outcome["issue"][0]["diagnostics"]


async def test_format_parameter_with_another_fhir_version_is_406(client: httpx.AsyncClient):
    response = await client.get(
        "AsyncJob/job-1", params={"_format": "application/fhir+json;fhirVersion=3.0"}
    )
    assert response.status_code == 406


async def test_a_write_in_another_fhir_version_is_415_and_stores_nothing(
    client: httpx.AsyncClient, store: JobStore
):
    body = b'{"resourceType":"AsyncJob","status":"accepted","request":"https://example.org/x"}'
    response = await client.post(
        "AsyncJob",
        content=body,
        headers={"Content-Type": "application/fhir+json; fhirVersion=3.0"},
    )
    assert response.status_code == 415
    assert response.json()["issue"][0]["code"] == "not-supported"
    assert await store.count(JobQuery()) == 1  # only the fixture's job
    fine = await client.post(
        "AsyncJob",
        content=body,
        headers={"Content-Type": "application/fhir+json; fhirVersion=4.0"},
    )
    assert fine.status_code == 201
