"""Content negotiation on read: Accept, _format and _pretty (cached per Accept header)."""

import httpx
import pytest

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
