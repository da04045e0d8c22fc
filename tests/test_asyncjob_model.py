"""AsyncJob validation: every problem reported at once, each with its element path."""

from typing import Any

import pytest

from fhir_server.api.http_status import status_of
from fhir_server.resources.asyncjob import validate_async_job
from fhir_server.resources.outcome import FhirError

from .conftest import make_job


def problems(data: Any) -> dict[str, str]:
    with pytest.raises(FhirError) as caught:
        validate_async_job(data)
    assert status_of(caught.value) == 400
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


def test_unknown_status_code():
    assert problems(make_job(status="running")) == {"AsyncJob.status": "code-invalid"}


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


def test_data_migration_requires_data_version():
    assert problems(make_job(type="data-migration")) == {"AsyncJob.dataVersion": "invariant"}


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
