"""AsyncJob validation: every problem reported at once, each with its element path."""

from typing import Any

import pytest

from fhir_server.api.http_status import status_of
from fhir_server.resources.asyncjob import validate_async_job
from fhir_server.resources.asyncjob_profile import JOB_TYPES
from fhir_server.resources.outcome import FhirError

from .conftest import make_job


def problems(data: Any, status: int = 400, stored: dict[str, Any] | None = None) -> dict[str, str]:
    with pytest.raises(FhirError) as caught:
        validate_async_job(data, stored)
    assert status_of(caught.value) == status
    return {issue.expression or "": issue.code for issue in caught.value.issues}


def test_a_complete_job_is_valid_and_keeps_its_values():
    job = make_job(
        status="completed",
        requestTime="2024-05-01T10:00:00.1234+02:00",
        transactionTime="2024-05-01T10:01:00Z",
        type="data-migration",
        dataVersion=7,
        minServerVersion="3.1.0",
        output={"resourceType": "Parameters", "parameter": [{"name": "n", "valueInteger": 3}]},
        extension=[{"url": "http://example.org/x", "valueString": "y"}],
        meta={"tag": [{"code": "t"}]},
    )
    stored = validate_async_job(job)
    assert stored == job  # spelling of the instant kept, nothing added or lost


def test_a_numeric_string_becomes_a_number():
    assert validate_async_job(make_job(dataVersion="3"))["dataVersion"] == 3


@pytest.mark.parametrize("name", ["status", "requestTime", "request"])
def test_missing_required_element(name: str):
    assert problems(make_job(**{name: None})) == {f"AsyncJob.{name}": "required"}


def test_unknown_status_code_is_unprocessable():
    assert problems(make_job(status="running"), 422) == {"AsyncJob.status": "code-invalid"}


@pytest.mark.parametrize("value", ["2024-05-01", "2024-05-01T10:00:00", "yesterday"])
def test_malformed_instant(value: str):
    assert problems(make_job(requestTime=value)) == {"AsyncJob.requestTime": "value"}


def test_unknown_element():
    assert problems(make_job(colour="blue")) == {"AsyncJob.colour": "structure"}


def test_output_must_be_a_parameters_resource():
    found = problems(make_job(output={"resourceType": "Patient"}))
    assert list(found) == ["AsyncJob.output.resourceType"]


def test_malformed_output_parameter_names_the_path():
    output = {"resourceType": "Parameters", "parameter": [{"name": "a"}, {"valueString": "x"}]}
    assert problems(make_job(output=output)) == {"AsyncJob.output.parameter[1].name": "required"}


@pytest.mark.parametrize("job_type", list(JOB_TYPES))
def test_every_type_of_the_profile_is_valid(job_type: str):
    extra = {"dataVersion": 1, "minServerVersion": "0.1.0"} if job_type == "data-migration" else {}
    assert validate_async_job(make_job(type=job_type, **extra))["type"] == job_type


def test_a_type_outside_the_profiles_value_set_is_unprocessable():
    assert problems(make_job(type="export"), 422) == {"AsyncJob.type": "code-invalid"}


def test_data_migration_requires_data_version_and_min_server_version():
    """The profile's invariant ajb-1 (Medplum's)."""
    assert problems(make_job(type="data-migration"), 422) == {
        "AsyncJob.dataVersion": "invariant",
        "AsyncJob.minServerVersion": "invariant",
    }
    only_version = make_job(type="data-migration", dataVersion=3)
    assert problems(only_version, 422) == {"AsyncJob.minServerVersion": "invariant"}


def test_an_update_keeps_what_its_stored_version_already_broke_of_the_profile():
    """A job stored before the profile stays changeable: its old type is let through, a new
    problem is not."""
    legacy = make_job(type="export")
    assert validate_async_job({**legacy, "status": "completed"}, legacy)["type"] == "export"
    renamed = {**legacy, "type": "exported"}
    assert problems(renamed, 422, stored=legacy) == {"AsyncJob.type": "code-invalid"}


def test_a_parse_error_leads_a_profile_error():
    found = problems(make_job(type="export", colour="blue"))
    assert found == {"AsyncJob.type": "code-invalid", "AsyncJob.colour": "structure"}


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"extension": []}, "AsyncJob.extension"),
        ({"meta": {}}, "AsyncJob.meta"),
        ({"output": {"resourceType": "Parameters", "parameter": []}}, "AsyncJob.output.parameter"),
        ({"meta": {"tag": [{}]}}, "AsyncJob.meta.tag[0]"),
        ({"request": ""}, "AsyncJob.request"),
    ],
)
def test_empty_arrays_objects_and_strings_are_refused(fields: dict[str, Any], path: str):
    """FHIR JSON has none: stored, they would be answered to every reader."""
    assert problems(make_job(**fields))[path] == "structure"


def test_every_problem_is_reported_at_once():
    found = problems(make_job(status="weird", request=None, colour=1, requestTime="2024"))
    assert found == {
        "AsyncJob.status": "code-invalid",
        "AsyncJob.request": "required",
        "AsyncJob.colour": "structure",
        "AsyncJob.requestTime": "value",
    }


def test_wrong_resource_type():
    assert problems(make_job(resourceType="Patient")) == {"resourceType": "invalid"}


def test_body_must_be_an_object():
    assert problems([make_job()]) == {"": "structure"}


@pytest.mark.parametrize("bad_id", ["a" * 65, "under_score", "", "sp ace"])
def test_invalid_id(bad_id: str):
    assert "AsyncJob.id" in problems(make_job(id=bad_id))
