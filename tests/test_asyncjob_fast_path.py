"""The plain-job fast path of validation: the same answer as pydantic, in microseconds."""

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_server.resources import asyncjob
from fhir_server.resources.asyncjob import plain_job, validate_async_job
from fhir_server.resources.outcome import FhirError


def by_pydantic(data: Any) -> Any:
    """validate_async_job without its fast path: the canonical JSON, or the error's issues."""
    saved = asyncjob.plain_job
    asyncjob.plain_job = lambda data: None  # type: ignore[assignment]
    try:
        return outcome(data)
    finally:
        asyncjob.plain_job = saved


def outcome(data: Any) -> Any:
    try:
        return orjson.dumps(validate_async_job(data))  # bytes: the key order counts too
    except FhirError as exc:
        return [(i.code, i.expression, i.diagnostics) for i in exc.issues]


instants = st.one_of(
    st.from_regex(
        r"\A[0-9]{4}-[0-1][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9](\.[0-9]{1,8})?"
        r"(Z|[+-][0-1][0-9]:[0-5][0-9])\Z"
    ),
    st.sampled_from(["2026-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-01-01", ""]),
)
strings = st.one_of(
    st.text(max_size=8), st.sampled_from(["a b", " x", "x\u000b", "https://e.org/$export"])
)
values = {
    "id": st.one_of(st.from_regex(r"\A[A-Za-z0-9.\-_ ]{0,70}\Z"), st.integers()),
    "meta": st.one_of(
        st.fixed_dictionaries({}, optional={"versionId": strings, "lastUpdated": instants}),
        st.just({"source": "x"}),
    ),
    "status": st.one_of(st.sampled_from(["accepted", "error", "completed", "cancelled"]), strings),
    "requestTime": instants,
    "transactionTime": instants,
    "request": strings,
    "type": st.one_of(st.sampled_from(["bulk-export", "data-migration", "x y"]), strings),
    "dataVersion": st.one_of(st.integers(), st.booleans(), st.just("1"), st.floats()),
    "minServerVersion": strings,
    "output": st.just({"resourceType": "Parameters"}),
}
any_jobs = st.fixed_dictionaries({"resourceType": st.just("AsyncJob")}, optional=values)
# Mostly valid: a plain job with some elements drawn from the above (or left out).
PLAIN_VALUES = {
    "id": "job-1",
    "status": "completed",
    "requestTime": "2026-01-01T00:00:00.000Z",
    "transactionTime": "2026-01-01T00:10:00Z",
    "request": "https://example.org/fhir/R4/$export",
    "type": "bulk-export",
    "meta": {"versionId": "1"},
}
near_plain = st.builds(
    lambda base, changed: base | changed,
    st.fixed_dictionaries(
        {"resourceType": st.just("AsyncJob")},
        optional={k: st.just(v) for k, v in PLAIN_VALUES.items()},
    ),
    st.dictionaries(st.sampled_from(sorted(values)), st.none(), max_size=2).flatmap(
        lambda keys: st.fixed_dictionaries({k: values[k] for k in keys})
    ),
)
jobs = st.one_of(any_jobs, near_plain)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(jobs)
def test_the_fast_path_answers_as_pydantic_does(job: dict[str, Any]):
    assert outcome(job) == by_pydantic(job)


PLAIN = {
    "resourceType": "AsyncJob",
    "id": "0f6e2a8c-51b7-4d3e-8a9f-2b1c4d6e8f02",
    "meta": {"lastUpdated": "2026-01-01T00:00:00.000Z", "versionId": "3"},
    "status": "completed",
    "type": "bulk-export",
    "requestTime": "2026-01-01T00:00:00.000Z",
    "transactionTime": "2026-01-01T00:00:01.5+01:00",
    "request": "https://example.org/fhir/R4/Patient/$export",
}


def test_a_plain_job_takes_the_fast_path_and_keeps_its_spelling():
    canonical = plain_job(PLAIN)
    assert canonical is not None
    assert orjson.dumps(canonical) == by_pydantic(PLAIN)
    assert canonical["transactionTime"] == "2026-01-01T00:00:01.5+01:00"


@pytest.mark.parametrize(
    "change",
    [
        {"output": {"resourceType": "Parameters"}},  # not plain: pydantic decides
        {"status": "running"},
        {"requestTime": "2026-02-30T00:00:00Z"},
        {"type": "data-migration"},  # ajb-1: the profile's invariant
        {"dataVersion": True},
    ],
)
def test_anything_else_goes_to_pydantic(change: dict[str, Any]):
    assert plain_job(PLAIN | change) is None
