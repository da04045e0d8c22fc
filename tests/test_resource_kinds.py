"""A second resource type is one module and one registry entry: registered, it is served with
its routes, access rules, CapabilityStatement and OpenAPI entries, and a store of its own."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.basic import Basic
from pydantic import ValidationError

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.resources import registry
from fhir_server.resources.asyncjob import ASYNC_JOB
from fhir_server.resources.conformance import CONFORMANCE_TYPES
from fhir_server.resources.kinds import ResourceKind, SearchParameter
from fhir_server.resources.outcome import FhirError, Issue

from .conftest import ADMIN_HEADERS, TEST_JWT_SECRET, bearer, make_job

HOST = "http://testserver/fhir/R4"


def validate_basic(data: Any) -> dict[str, Any]:
    """What a resource module provides: FHIR JSON in, canonical JSON out, FhirError if not."""
    if not isinstance(data, dict) or data.get("resourceType") != "Basic":
        raise FhirError.of("invalid", "Expected a Basic resource", "resourceType")
    try:
        return Basic.model_validate(data).model_dump(mode="json", by_alias=True)
    except ValidationError as exc:
        raise FhirError([Issue("value", str(e["msg"])) for e in exc.errors()]) from None


BASIC = ResourceKind(
    type="Basic",
    description="Resources for which no specific resource is defined",
    profile="http://hl7.org/fhir/StructureDefinition/Basic",
    validate=validate_basic,
    search_parameters=(
        SearchParameter("_id", "token", "Basic.id", "Logical id", "id", ("id",)),
        SearchParameter(
            "_lastUpdated",
            "date",
            "Basic.meta.lastUpdated",
            "When it last changed",
            "last_updated",
            ("meta", "lastUpdated"),
        ),
        SearchParameter(
            "created", "date", "Basic.created", "When created", "created", ("created",)
        ),
    ),
    default_sort=(("last_updated", True),),
    mandatory_elements=("resourceType", "id", "meta", "code"),
    summary_elements=("resourceType", "id", "meta", "code", "created"),
)


@pytest.fixture
async def http(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setattr(registry, "KINDS", (ASYNC_JOB, BASIC))
    settings = Settings(data_dir=tmp_path, secret_key="test-secret", jwt_secret=TEST_JWT_SECRET)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, headers=ADMIN_HEADERS) as client:
            yield client


def basic(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Basic", "code": {"text": "note"}, "created": "2026-01-02", **fields}


async def test_the_new_type_is_created_read_updated_searched_and_deleted(http: httpx.AsyncClient):
    created = await http.post(f"{HOST}/Basic", json=basic())
    assert created.status_code == 201, created.text
    basic_id = created.json()["id"]
    assert created.headers["location"] == f"{HOST}/Basic/{basic_id}/_history/1"

    read = await http.get(f"{HOST}/Basic/{basic_id}")
    assert read.status_code == 200
    assert read.json()["code"] == {"text": "note"}

    updated = await http.put(
        f"{HOST}/Basic/{basic_id}", json=basic(id=basic_id, created="2026-03-04")
    )
    assert updated.status_code == 200
    assert updated.headers["etag"] == 'W/"2"'

    found = (await http.get(f"{HOST}/Basic", params={"created": "ge2026-03"})).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [basic_id]
    assert found["entry"][0]["fullUrl"] == f"{HOST}/Basic/{basic_id}"
    none = (await http.get(f"{HOST}/Basic", params={"created": "lt2026-03"})).json()
    assert none["total"] == 0

    history = (await http.get(f"{HOST}/Basic/{basic_id}/_history")).json()
    assert [e["response"]["etag"] for e in history["entry"]] == ['W/"2"', 'W/"1"']

    assert (await http.delete(f"{HOST}/Basic/{basic_id}")).status_code == 204
    assert (await http.get(f"{HOST}/Basic/{basic_id}")).status_code == 410


async def test_an_invalid_resource_of_the_new_type_is_refused_and_nothing_stored(
    http: httpx.AsyncClient,
):
    response = await http.post(f"{HOST}/Basic", json=basic(code="not a CodeableConcept"))
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert (await http.get(f"{HOST}/Basic")).json()["total"] == 0


async def test_each_type_has_a_store_of_its_own(http: httpx.AsyncClient):
    await http.put(f"{HOST}/Basic/shared-id", json=basic(id="shared-id"))
    await http.put(f"{HOST}/AsyncJob/shared-id", json=make_job(id="shared-id"))
    assert (await http.get(f"{HOST}/Basic/shared-id")).json()["resourceType"] == "Basic"
    assert (await http.get(f"{HOST}/AsyncJob/shared-id")).json()["resourceType"] == "AsyncJob"
    assert (await http.get(f"{HOST}/AsyncJob")).json()["total"] == 1
    assert (await http.get(f"{HOST}/Basic")).json()["total"] == 1


async def test_the_new_type_needs_scopes_on_itself(http: httpx.AsyncClient):
    await http.put(f"{HOST}/Basic/b-1", json=basic(id="b-1"))
    jobs_only = bearer("admin", "system/AsyncJob.cruds")
    assert (await http.get(f"{HOST}/Basic/b-1", headers=jobs_only)).status_code == 403
    reader = bearer("admin", "system/Basic.rs system/*.*")
    assert (await http.get(f"{HOST}/Basic/b-1", headers=reader)).status_code == 200
    read_only = bearer("someone", "system/Basic.rs")
    refused = await http.post(f"{HOST}/Basic", json=basic(), headers=read_only)
    assert refused.status_code == 403
    assert "system/Basic.cud" in refused.headers["www-authenticate"]


async def test_the_capability_statement_and_openapi_describe_the_new_type(
    http: httpx.AsyncClient,
):
    capability = (await http.get(f"{HOST}/metadata")).json()
    resources = {r["type"]: r for r in capability["rest"][0]["resource"]}
    assert set(resources) == {"AsyncJob", "Basic", *CONFORMANCE_TYPES}
    assert [p["name"] for p in resources["Basic"]["searchParam"]] == [
        "_id",
        "_lastUpdated",
        "created",
    ]
    assert "operation" not in resources["Basic"]
    assert resources["Basic"]["profile"] == "http://hl7.org/fhir/StructureDefinition/Basic"
    # its own search parameter's definition is served, with the URL the statement names
    created = resources["Basic"]["searchParam"][2]["definition"]
    assert created == f"{HOST}/SearchParameter/Basic-created"
    definition = (await http.get(created)).json()
    assert (definition["code"], definition["base"]) == ("created", ["Basic"])
    paths = (await http.get("http://testserver/openapi.json")).json()["paths"]
    assert {"/fhir/R4/Basic", "/fhir/R4/Basic/{id}", "/fhir/R4/Basic/_search"} <= set(paths)
    assert paths["/fhir/R4/Basic/{id}"]["get"]["description"].startswith(
        "Needs scope system/Basic.rs"
    )
