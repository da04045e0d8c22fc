"""The pure AsyncJob -> eHealth `data` mapping (fhir_server.resources.ehealth)."""

from datetime import UTC, datetime, timedelta

import pytest

from fhir_server.resources import ehealth

from .conftest import make_job
from .ehealth_helpers import output


@pytest.mark.parametrize(
    ("resource_type", "entity"),
    [
        ("Encounter", "encounter"),
        ("AllergyIntolerance", "allergy_intolerance"),
        ("MedicationStatement", "medication_statement"),
        ("MedicationAdministration", "medication_administration"),
        ("DiagnosticReport", "diagnostic_report"),
        ("RiskAssessment", "risk_assessment"),
        ("ServiceRequest", "service_request"),
        ("EpisodeOfCare", "episode_of_care"),
    ],
)
def test_entity_name_is_the_snake_case_resource_type(resource_type: str, entity: str):
    assert ehealth.entity_name(resource_type) == entity


def test_format_instant_is_utc_with_milliseconds_truncated():
    moment = datetime(2018, 8, 2, 10, 45, 16, 999_999, tzinfo=UTC)
    assert ehealth.format_instant(moment) == "2018-08-02T10:45:16.999Z"


def test_reference_with_an_explicit_type_uses_that_type():
    job = make_job(
        status="completed",
        output=output(
            {"name": "x", "valueReference": {"reference": "urn:uuid:1", "type": "Observation"}}
        ),
    )
    assert ehealth.links_of(job, "https://h/fhir/R4") == [
        {"entity": "observation", "href": "urn:uuid:1"}
    ]


def test_versioned_reference_is_linked_with_its_type():
    job = make_job(
        output=output({"name": "x", "valueReference": {"reference": "Condition/c/_history/2"}})
    )
    assert ehealth.links_of(job, "https://h/fhir/R4") == [
        {"entity": "condition", "href": "https://h/fhir/R4/Condition/c/_history/2"}
    ]


@pytest.mark.parametrize(
    "parameter",
    [
        {"name": "link", "part": [{"name": "entity", "valueCode": "encounter"}]},
        {"name": "link", "part": [{"name": "href", "valueUri": "encounters/e"}]},
        {"name": "x", "valueReference": {"reference": "#contained"}},
        {"name": "x", "valueReference": {"display": "no reference"}},
    ],
)
def test_incomplete_links_are_left_out(parameter: dict[str, object]):
    assert ehealth.links_of(make_job(output=output(parameter)), "https://h/fhir/R4") == []


def test_response_data_parts_become_an_object_and_repeated_names_a_list():
    parameter = {
        "name": "response_data",
        "part": [
            {"name": "id", "valueString": "a-1"},
            {"name": "tag", "valueCode": "x"},
            {"name": "tag", "valueCode": "y"},
            {"name": "nested", "part": [{"name": "n", "valueInteger": 1}]},
        ],
    }
    assert ehealth.parameter_value(parameter) == {
        "id": "a-1",
        "tag": ["x", "y"],
        "nested": {"n": 1},
    }


def test_response_data_value_is_rendered_as_it_is():
    assert ehealth.parameter_value({"name": "response_data", "valueBoolean": True}) is True


def test_job_view_of_an_accepted_job_links_the_given_self_href():
    view = ehealth.job_status(
        make_job(status="accepted"),
        self_href="/Jobs/j",
        fhir_base="https://h/fhir/R4",
        default_eta=timedelta(minutes=1),
    )
    assert view == ehealth.JobView(
        200,
        {
            "status": "pending",
            "eta": "2026-01-01T00:01:00.000Z",
            "links": [{"entity": "job", "href": "/Jobs/j"}],
        },
    )
