"""eHealth job status, GET /Jobs/{id} and GET /api/jobs/{id}: every row and rule of the mapping
in docs/ehealth.md."""

from datetime import timedelta

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.resources.ehealth import ETA_EXTENSION_URL
from fhir_server.storage.base import JobStore

from .conftest import ADMIN_HEADERS, put_job
from .ehealth_helpers import (
    ETA_FORMAT,
    HOST,
    get,
    issue,
    link,
    meta,
    outcome,
    output,
    reference,
)

PREFIXES = ["/Jobs", "/api/jobs"]
# make_job's requestTime is 2026-01-01T00:00:00.000Z; the default eta adds 10 minutes.
DEFAULT_ETA = "2026-01-01T00:10:00.000Z"


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_accepted_job_is_pending_with_a_link_to_itself_under_the_called_prefix(
    client: httpx.AsyncClient, store: JobStore, prefix: str
):
    await put_job(store, id="job-1", status="accepted")
    response = await get(client, f"{prefix}/job-1")
    assert response.status_code == 200
    assert response.json() == {
        "data": {
            "status": "pending",
            "eta": DEFAULT_ETA,
            "links": [{"entity": "job", "href": f"{prefix}/job-1"}],
        },
        "meta": meta(200, f"{prefix}/job-1"),
    }


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_completed_job_is_processed_with_http_303_and_its_links(
    client: httpx.AsyncClient, store: JobStore, prefix: str
):
    href = "https://ehealth.example.org/api/patients/p-1/encounters/e-1"
    await put_job(store, id="job-1", status="completed", output=output(link("encounter", href)))
    response = await get(client, f"{prefix}/job-1")
    assert response.status_code == 303
    assert response.json() == {
        "data": {
            "status": "processed",
            "eta": DEFAULT_ETA,
            "status_code": "200",
            "links": [{"entity": "encounter", "href": href}],
        },
        "meta": meta(303, f"{prefix}/job-1"),
    }


async def test_processed_303_has_no_location_header(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1", status="completed")
    response = await get(client, "/Jobs/job-1")
    assert response.status_code == 303
    assert "location" not in response.headers


async def test_completed_job_without_links_is_processed_with_empty_links(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1", status="completed")
    response = await get(client, "/Jobs/job-1")
    assert response.json()["data"] == {
        "status": "processed",
        "eta": DEFAULT_ETA,
        "status_code": "200",
        "links": [],
    }


async def test_link_parameters_are_copied_verbatim_in_order_from_every_allowed_value_type(
    client: httpx.AsyncClient, store: JobStore
):
    parameters = output(
        link("condition", "{host}/api/patients/p/conditions/c", "valueCode", "valueUri"),
        link("observation", "https://h/api/observations/o", "valueString", "valueUrl"),
        link("episode", "episodes/e", "valueCode", "valueString"),
    )
    await put_job(store, id="job-1", status="completed", output=parameters)
    response = await get(client, "/Jobs/job-1")
    assert response.json()["data"]["links"] == [
        {"entity": "condition", "href": "{host}/api/patients/p/conditions/c"},
        {"entity": "observation", "href": "https://h/api/observations/o"},
        {"entity": "episode", "href": "episodes/e"},
    ]


async def test_reference_values_become_absolute_links_with_snake_case_entities(
    client: httpx.AsyncClient, store: JobStore
):
    parameters = output(
        reference("encounter", "Encounter/e-1"),
        reference("allergy", "AllergyIntolerance/a-1"),
        reference("statement", "MedicationStatement/m-1"),
    )
    await put_job(store, id="job-1", status="completed", output=parameters)
    response = await get(client, "/Jobs/job-1")
    assert response.json()["data"]["links"] == [
        {"entity": "encounter", "href": f"{HOST}/fhir/R4/Encounter/e-1"},
        {"entity": "allergy_intolerance", "href": f"{HOST}/fhir/R4/AllergyIntolerance/a-1"},
        {"entity": "medication_statement", "href": f"{HOST}/fhir/R4/MedicationStatement/m-1"},
    ]


async def test_an_absolute_reference_is_linked_as_it_is(client: httpx.AsyncClient, store: JobStore):
    target = "https://other.example.org/fhir/DiagnosticReport/d-1"
    await put_job(store, id="job-1", status="completed", output=output(reference("r", target)))
    response = await get(client, "/Jobs/job-1")
    assert response.json()["data"]["links"] == [{"entity": "diagnostic_report", "href": target}]


async def test_link_parameters_and_references_keep_their_output_order(
    client: httpx.AsyncClient, store: JobStore
):
    parameters = output(
        reference("first", "Procedure/p-1"),
        {"name": "note", "valueString": "not a link"},
        link("device", "devices/d-1"),
        reference("third", "Immunization/i-1"),
    )
    await put_job(store, id="job-1", status="completed", output=parameters)
    response = await get(client, "/Jobs/job-1")
    assert [entry["entity"] for entry in response.json()["data"]["links"]] == [
        "procedure",
        "device",
        "immunization",
    ]


async def test_completed_job_with_response_data_is_200_with_response_data_instead_of_links(
    client: httpx.AsyncClient, store: JobStore
):
    response_data = {
        "name": "response_data",
        "part": [
            {"name": "id", "valueString": "a-1"},
            {"name": "status", "valueCode": "new"},
        ],
    }
    await put_job(store, id="job-1", status="completed", output=output(response_data))
    response = await get(client, "/Jobs/job-1")
    assert response.status_code == 200
    assert response.json() == {
        "data": {
            "status": "processed",
            "eta": DEFAULT_ETA,
            "status_code": "200",
            "response_data": {"id": "a-1", "status": "new"},
        },
        "meta": meta(200, "/Jobs/job-1"),
    }


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_error_job_is_failed_with_status_code_and_error(
    client: httpx.AsyncClient, store: JobStore, prefix: str
):
    parameters = output(outcome(issue("forbidden", text="Error description")))
    await put_job(store, id="job-1", status="error", output=parameters)
    response = await get(client, f"{prefix}/job-1")
    assert response.status_code == 200
    assert response.json() == {
        "data": {
            "status": "failed",
            "eta": DEFAULT_ETA,
            "status_code": "403",
            "error": "Error description",
        },
        "meta": meta(200, f"{prefix}/job-1"),
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [({"valueInteger": 451}, "451"), ({"valueString": "418"}, "418")],
)
async def test_status_code_parameter_wins_over_the_issue_code(
    client: httpx.AsyncClient, store: JobStore, value: dict[str, object], expected: str
):
    parameters = output({"name": "status_code", **value}, outcome(issue("not-found", "Gone")))
    await put_job(store, id="job-1", status="error", output=parameters)
    data = (await get(client, "/Jobs/job-1")).json()["data"]
    assert data["status_code"] == expected
    assert data["error"] == "Gone"


@pytest.mark.parametrize(
    ("code", "status_code"),
    [
        ("not-found", "404"),
        ("forbidden", "403"),
        ("security", "403"),
        ("invalid", "422"),
        ("required", "422"),
        ("value", "422"),
        ("structure", "422"),
        ("conflict", "409"),
        ("duplicate", "409"),
        ("business-rule", "409"),
        ("exception", "500"),
        ("timeout", "500"),
    ],
)
async def test_status_code_is_derived_from_the_first_issue_code(
    client: httpx.AsyncClient, store: JobStore, code: str, status_code: str
):
    parameters = output(outcome(issue(code, text="x"), issue("forbidden", text="second")))
    await put_job(store, id="job-1", status="error", output=parameters)
    data = (await get(client, "/Jobs/job-1")).json()["data"]
    assert data["status_code"] == status_code


async def test_error_message_is_the_first_issue_details_text(
    client: httpx.AsyncClient, store: JobStore
):
    first = issue("invalid", text="Period is invalid", diagnostics="period.end < period.start")
    parameters = output(outcome(first, issue("value", text="Other")))
    await put_job(store, id="job-1", status="error", output=parameters)
    assert (await get(client, "/Jobs/job-1")).json()["data"]["error"] == "Period is invalid"


async def test_error_message_falls_back_to_diagnostics(client: httpx.AsyncClient, store: JobStore):
    parameters = output(outcome(issue("invalid", diagnostics="period.end < period.start")))
    await put_job(store, id="job-1", status="error", output=parameters)
    data = (await get(client, "/Jobs/job-1")).json()["data"]
    assert data["error"] == "period.end < period.start"


async def test_error_job_without_an_outcome_is_failed_500_job_failed(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1", status="error")
    response = await get(client, "/Jobs/job-1")
    assert response.status_code == 200
    assert response.json()["data"] == {
        "status": "failed",
        "eta": DEFAULT_ETA,
        "status_code": "500",
        "error": "Job failed",
    }


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_cancelled_job_is_failed_409_job_was_cancelled(
    client: httpx.AsyncClient, store: JobStore, prefix: str
):
    await put_job(store, id="job-1", status="cancelled")
    response = await get(client, f"{prefix}/job-1")
    assert response.status_code == 200
    assert response.json() == {
        "data": {
            "status": "failed",
            "eta": DEFAULT_ETA,
            "status_code": "409",
            "error": "Job was cancelled",
        },
        "meta": meta(200, f"{prefix}/job-1"),
    }


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_unknown_job_is_404_not_found(client: httpx.AsyncClient, prefix: str):
    response = await get(client, f"{prefix}/nope")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"type": "not_found", "message": "Job not found"},
        "meta": meta(404, f"{prefix}/nope"),
    }


async def test_deleted_job_is_404_like_an_unknown_one(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    await store.delete("job-1", expected_version=1)
    response = await get(client, "/Jobs/job-1")
    assert response.status_code == 404
    assert response.json()["error"] == {"type": "not_found", "message": "Job not found"}


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("bad", ["has_underscore", "a" * 65, "x%20y"])
async def test_id_that_is_not_a_fhir_id_is_400_request_malformed(
    client: httpx.AsyncClient, prefix: str, bad: str
):
    response = await get(client, f"{prefix}/{bad}")
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error", "meta"}
    assert body["error"]["type"] == "request_malformed"
    assert body["error"]["message"].startswith("Invalid job id '")
    assert body["meta"] == meta(400, f"{prefix}/{bad}")


async def test_eta_comes_from_the_eta_extension_in_utc_with_milliseconds(
    client: httpx.AsyncClient, store: JobStore
):
    extension = [{"url": ETA_EXTENSION_URL, "valueInstant": "2026-03-01T12:00:05.5+02:00"}]
    await put_job(store, id="job-1", extension=extension)
    data = (await get(client, "/Jobs/job-1")).json()["data"]
    assert data["eta"] == "2026-03-01T10:00:05.500Z"


async def test_eta_ignores_other_extensions(client: httpx.AsyncClient, store: JobStore):
    extension = [{"url": "https://example.org/other", "valueInstant": "2030-01-01T00:00:00Z"}]
    await put_job(store, id="job-1", extension=extension)
    assert (await get(client, "/Jobs/job-1")).json()["data"]["eta"] == DEFAULT_ETA


async def test_eta_defaults_to_request_time_plus_the_configured_eta(store: JobStore):
    settings = Settings(secret_key="test-secret", ehealth_eta=timedelta(seconds=90))
    app = create_app(settings, store=store)
    await put_job(store, id="job-1", requestTime="2026-01-01T23:59:00.123456+00:00")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, headers=ADMIN_HEADERS) as http:
        data = (await get(http, "/Jobs/job-1")).json()["data"]
    assert data["eta"] == "2026-01-02T00:00:30.123Z"


@pytest.mark.parametrize("status", ["accepted", "completed", "error", "cancelled"])
async def test_eta_has_the_ehealth_format_and_is_stable_across_polls(
    client: httpx.AsyncClient, store: JobStore, status: str
):
    await put_job(store, id="job-1", status=status, requestTime="2026-05-05T10:00:00+03:00")
    first = (await get(client, "/Jobs/job-1")).json()["data"]["eta"]
    second = (await get(client, "/Jobs/job-1")).json()["data"]["eta"]
    assert ETA_FORMAT.match(first)
    assert first == second == "2026-05-05T07:10:00.000Z"


async def test_job_status_is_answered_as_application_json(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1")
    response = await get(client, "/Jobs/job-1")
    assert response.headers["content-type"] == "application/json"
