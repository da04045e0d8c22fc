"""The AsyncJob status rules as pure functions, without HTTP or a store."""

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from fhir_server.jobs.rules import (
    TRANSITIONS,
    JobCancelled,
    RuleViolation,
    cancellation,
    check_transition,
    ensure_running,
    failure_outcome,
    new_job,
    same_job,
    stamp_transaction_time,
    updated_job,
)
from fhir_server.resources.outcome import FhirError

from ..conftest import make_job

STATUSES = ("accepted", "completed", "error", "cancelled")
FINAL = ("completed", "error", "cancelled")
# The documented moves: accepted → accepted (progress) | completed | error | cancelled.
ALLOWED = {("accepted", to) for to in STATUSES}
PAIRS = [(before, after) for before in STATUSES for after in STATUSES]

JOB_ID = "job-1"
REQUEST_TIME = "2026-01-01T00:00:00.000Z"
SERVER_META = {"versionId": "3", "lastUpdated": "2026-01-01T00:01:00.000Z"}
FAILURE = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "exception", "diagnostics": "disk full"}],
}
OUTCOME = {"resourceType": "Parameters", "parameter": [{"name": "outcome", "resource": FAILURE}]}
# The FHIR R4 instant regex, from the specification.
FHIR_INSTANT = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,9})?"
    r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)


def job(status: str = "accepted", **fields: Any) -> dict[str, Any]:
    """A valid AsyncJob with id job-1, as a client sends it."""
    return make_job(**{"id": JOB_ID, "status": status, **fields})


def stored(status: str = "accepted", **fields: Any) -> dict[str, Any]:
    """A job as the store returns it: with the server-owned meta."""
    return job(status, meta=SERVER_META, **fields)


def move_to(status: str, **fields: Any) -> dict[str, Any]:
    """A write to `status` that breaks no other rule (a failure carries its outcome)."""
    if status == "error":
        fields.setdefault("output", OUTCOME)
    return job(status, **fields)


def pair_id(pair: tuple[str, str]) -> str:
    return f"{pair[0]}->{pair[1]}"


def assert_close_to_now(instant: str, before: datetime, after: datetime) -> None:
    assert FHIR_INSTANT.fullmatch(instant), instant
    moment = datetime.fromisoformat(instant)
    assert moment.tzinfo is not None
    # the stamp is truncated to milliseconds
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= moment <= after


def only_issue(error: FhirError) -> tuple[str, str | None]:
    assert len(error.issues) == 1, error.issues
    return error.issues[0].code, error.issues[0].expression


# --- the transition table ---------------------------------------------------------------


def test_the_transition_table_allows_exactly_the_documented_moves():
    table = {(before, after) for before, afters in TRANSITIONS.items() for after in afters}
    assert set(TRANSITIONS) == set(STATUSES)
    assert table == ALLOWED


@pytest.mark.parametrize("pair", sorted(ALLOWED), ids=pair_id)
def test_an_accepted_job_may_move_to_any_status(pair: tuple[str, str]):
    before, after = pair
    check_transition(stored(before), move_to(after))


@pytest.mark.parametrize("pair", [p for p in PAIRS if p[0] in ("completed", "error")], ids=pair_id)
def test_a_final_status_cannot_change(pair: tuple[str, str]):
    before, after = pair
    with pytest.raises(RuleViolation) as refused:
        check_transition(stored(before), move_to(after))
    assert not isinstance(refused.value, JobCancelled)
    assert only_issue(refused.value) == ("business-rule", "AsyncJob.status")
    assert f"is '{before}', a final status" in refused.value.issues[0].diagnostics


@pytest.mark.parametrize("pair", [p for p in PAIRS if p[0] == "cancelled"], ids=pair_id)
def test_a_cancelled_job_cannot_change(pair: tuple[str, str]):
    before, after = pair
    with pytest.raises(JobCancelled) as refused:
        check_transition(stored(before), move_to(after))
    assert refused.value.job_id == JOB_ID
    assert only_issue(refused.value) == ("business-rule", "AsyncJob.status")
    assert f"AsyncJob/{JOB_ID} was cancelled" in refused.value.issues[0].diagnostics


def test_a_cancelled_job_refusal_is_a_rule_violation():
    with pytest.raises(RuleViolation):
        check_transition(stored("cancelled"), move_to("accepted"))


# --- immutable elements ----------------------------------------------------------------

CHANGES = {
    "requestTime": "2026-01-02T00:00:00.000Z",
    "request": "https://example.org/fhir/R4/Patient/$export",
}


@pytest.mark.parametrize("after", STATUSES, ids=lambda status: f"to-{status}")
@pytest.mark.parametrize("name", list(CHANGES))
def test_an_immutable_element_cannot_change(name: str, after: str):
    with pytest.raises(RuleViolation) as refused:
        check_transition(stored(), move_to(after, **{name: CHANGES[name]}))
    assert only_issue(refused.value) == ("business-rule", f"AsyncJob.{name}")
    assert f"{name} cannot change" in refused.value.issues[0].diagnostics


def test_each_changed_immutable_element_is_named_in_its_own_issue():
    with pytest.raises(RuleViolation) as refused:
        check_transition(stored(), move_to("completed", **CHANGES))
    assert [(i.code, i.expression) for i in refused.value.issues] == [
        ("business-rule", "AsyncJob.requestTime"),
        ("business-rule", "AsyncJob.request"),
    ]
    assert "requestTime cannot change" in refused.value.issues[0].diagnostics
    assert "request cannot change" in refused.value.issues[1].diagnostics


@pytest.mark.parametrize(
    ("stored_as", "sent_as"),
    [
        ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00.000Z"),
        ("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00Z"),
        ("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000+00:00"),
        ("2026-01-01T00:00:00.000Z", "2026-01-01T01:00:00+01:00"),
        ("2026-01-01T00:00:00.000Z", "2025-12-31T19:00:00-05:00"),
    ],
    ids=["seconds-vs-millis", "millis-vs-seconds", "Z-vs-+00:00", "+01:00", "-05:00"],
)
def test_request_time_is_compared_as_an_instant(stored_as: str, sent_as: str):
    check_transition(stored(requestTime=stored_as), move_to("completed", requestTime=sent_as))


def test_a_request_time_one_millisecond_later_is_a_change():
    with pytest.raises(RuleViolation) as refused:
        check_transition(
            stored(requestTime="2026-01-01T00:00:00.000Z"),
            move_to("completed", requestTime="2026-01-01T00:00:00.001Z"),
        )
    assert only_issue(refused.value) == ("business-rule", "AsyncJob.requestTime")


# --- a failure carries its outcome -------------------------------------------------------


@pytest.mark.parametrize(
    "output",
    [
        None,
        {"resourceType": "Parameters", "parameter": [{"name": "count", "valueInteger": 3}]},
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "outcome", "valueString": "disk full"}],
        },
    ],
    ids=["no-output", "no-outcome-parameter", "outcome-not-an-OperationOutcome"],
)
def test_entering_error_without_an_outcome_is_refused(output: dict[str, Any] | None):
    with pytest.raises(RuleViolation) as refused:
        check_transition(stored(), job("error", output=output))
    assert only_issue(refused.value) == ("business-rule", "AsyncJob.output")
    assert "OperationOutcome in output parameter 'outcome'" in refused.value.issues[0].diagnostics


def test_entering_error_with_an_outcome_passes():
    check_transition(stored(), job("error", output=OUTCOME))


def test_every_broken_rule_is_reported_at_once():
    with pytest.raises(RuleViolation) as refused:
        check_transition(stored(), job("error", **CHANGES))
    assert [i.expression for i in refused.value.issues] == [
        "AsyncJob.requestTime",
        "AsyncJob.request",
        "AsyncJob.output",
    ]
    assert {i.code for i in refused.value.issues} == {"business-rule"}


# --- transactionTime -------------------------------------------------------------------


@pytest.mark.parametrize("status", ["completed", "error"])
def test_entering_a_final_outcome_stamps_transaction_time_now(status: str):
    before = datetime.now(UTC)
    stamped = stamp_transaction_time(move_to(status))
    after = datetime.now(UTC)
    assert_close_to_now(stamped["transactionTime"], before, after)


@pytest.mark.parametrize("status", ["completed", "error"])
def test_a_given_transaction_time_is_kept(status: str):
    given = move_to(status, transactionTime="2026-01-01T00:05:00Z")
    assert stamp_transaction_time(given)["transactionTime"] == "2026-01-01T00:05:00Z"


@pytest.mark.parametrize("status", ["accepted", "cancelled"])
def test_transaction_time_is_not_stamped_for_a_job_without_a_result(status: str):
    assert "transactionTime" not in stamp_transaction_time(job(status))


def test_stamping_leaves_the_given_job_alone():
    given = move_to("completed")
    stamp_transaction_time(given)
    assert "transactionTime" not in given


# --- new_job ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", FINAL)
def test_a_new_job_must_start_accepted(status: str):
    with pytest.raises(RuleViolation) as refused:
        new_job(move_to(status))
    assert only_issue(refused.value) == ("business-rule", "AsyncJob.status")
    diagnostics = refused.value.issues[0].diagnostics
    assert f"must have status 'accepted', not '{status}'" in diagnostics


def test_a_new_accepted_job_is_kept_as_sent():
    sent = job(requestTime="2026-01-01T00:00:00Z", type="bulk-export")
    assert new_job(sent) == sent


def test_a_new_job_request_time_defaults_to_now():
    before = datetime.now(UTC)
    created = new_job(job(requestTime=None))
    after = datetime.now(UTC)
    assert_close_to_now(created["requestTime"], before, after)


INVALID_NEW_JOBS = {
    "wrong-resourceType": (
        {"resourceType": "Patient"},
        ("invalid", "resourceType"),
        "Expected resourceType 'AsyncJob'",
    ),
    "missing-request": ({"request": None}, ("required", "AsyncJob.request"), "'request'"),
    "missing-status": ({"status": None}, ("required", "AsyncJob.status"), "'status'"),
    "unknown-status": (
        {"status": "running"},
        ("code-invalid", "AsyncJob.status"),
        "Unknown status 'running'",
    ),
    "id-with-a-space": ({"id": "no spaces"}, ("value", "AsyncJob.id"), "'AsyncJob.id'"),
    "id-over-64-characters": ({"id": "x" * 65}, ("value", "AsyncJob.id"), "Invalid id 'xxx"),
    "invalid-requestTime": (
        {"requestTime": "yesterday"},
        ("value", "AsyncJob.requestTime"),
        "Invalid value at 'AsyncJob.requestTime'",
    ),
    "unknown-element": (
        {"colour": "blue"},
        ("structure", "AsyncJob.colour"),
        "Unknown element 'AsyncJob.colour'",
    ),
    "data-migration-without-dataVersion": (
        {"type": "data-migration", "minServerVersion": "0.1.0"},
        ("invariant", "AsyncJob.dataVersion"),
        "ajb-1: a data-migration AsyncJob must have a dataVersion",
    ),
    "data-migration-without-minServerVersion": (
        {"type": "data-migration", "dataVersion": 3},
        ("invariant", "AsyncJob.minServerVersion"),
        "ajb-1: a data-migration AsyncJob must have a minServerVersion",
    ),
    "type-outside-the-profile": (
        {"type": "export"},
        ("code-invalid", "AsyncJob.type"),
        "Unknown AsyncJob type 'export'",
    ),
}


@pytest.mark.parametrize(
    ("fields", "issue", "diagnostics"), INVALID_NEW_JOBS.values(), ids=INVALID_NEW_JOBS.keys()
)
def test_an_invalid_new_job_is_rejected_with_the_validation_issue(
    fields: dict[str, Any], issue: tuple[str, str], diagnostics: str
):
    with pytest.raises(FhirError) as rejected:
        new_job(job(**fields))
    assert not isinstance(rejected.value, RuleViolation)
    assert only_issue(rejected.value) == issue
    assert diagnostics in rejected.value.issues[0].diagnostics


# --- updated_job -----------------------------------------------------------------------

UNCHANGED = {
    "identical": lambda current: current,
    "other-versionId": lambda current: {**current, "meta": {**SERVER_META, "versionId": "1"}},
    "other-lastUpdated": lambda current: {
        **current,
        "meta": {**SERVER_META, "lastUpdated": "2026-02-01T00:00:00.000Z"},
    },
    "without-meta": lambda current: {k: v for k, v in current.items() if k != "meta"},
    "requestTime-omitted": lambda current: {
        k: v for k, v in current.items() if k not in ("meta", "requestTime")
    },
}


@pytest.mark.parametrize("resend", UNCHANGED.values(), ids=UNCHANGED.keys())
def test_an_update_that_changes_only_server_meta_is_no_change(resend: Any):
    current = stored("accepted")
    assert updated_job(current, resend(current)) is None


@pytest.mark.parametrize("status", FINAL)
def test_a_final_job_sent_again_unchanged_is_no_change(status: str):
    current = stored(status, **({"output": OUTCOME} if status == "error" else {}))
    assert updated_job(current, {k: v for k, v in current.items() if k != "meta"}) is None


def test_an_update_to_other_meta_is_a_change():
    current = stored("accepted")
    resent = {**current, "meta": {**SERVER_META, "source": "worker-2"}}
    assert updated_job(current, resent) == resent


def test_a_progress_update_is_returned_without_transaction_time():
    progress = job("accepted", output=OUTCOME)
    assert updated_job(stored("accepted"), progress) == progress


@pytest.mark.parametrize("status", ["completed", "error"])
def test_an_update_entering_a_final_outcome_is_stamped(status: str):
    before = datetime.now(UTC)
    updated = updated_job(stored("accepted"), move_to(status))
    after = datetime.now(UTC)
    assert updated is not None
    assert_close_to_now(updated["transactionTime"], before, after)


def test_an_update_without_request_time_keeps_the_stored_one():
    current = stored("accepted", requestTime="2025-06-30T12:00:00+02:00")
    updated = updated_job(current, move_to("completed", requestTime=None))
    assert updated is not None
    assert updated["requestTime"] == "2025-06-30T12:00:00+02:00"


def test_an_update_is_checked_against_the_transition_rules():
    with pytest.raises(RuleViolation) as refused:
        updated_job(stored("completed"), job("accepted"))
    assert only_issue(refused.value) == ("business-rule", "AsyncJob.status")


def test_an_invalid_update_is_rejected_before_the_rules_are_applied():
    with pytest.raises(FhirError) as rejected:
        updated_job(stored("cancelled"), job("running"))
    assert not isinstance(rejected.value, RuleViolation)
    assert only_issue(rejected.value) == ("code-invalid", "AsyncJob.status")


# --- ensure_running --------------------------------------------------------------------


def test_an_accepted_job_is_running():
    ensure_running(stored("accepted"))


@pytest.mark.parametrize("status", ["completed", "error"])
def test_a_finished_job_is_not_running(status: str):
    with pytest.raises(RuleViolation) as refused:
        ensure_running(stored(status))
    assert not isinstance(refused.value, JobCancelled)
    assert only_issue(refused.value) == ("business-rule", "AsyncJob.status")
    assert f"AsyncJob/{JOB_ID} is already '{status}'" in refused.value.issues[0].diagnostics


def test_a_cancelled_job_tells_its_worker_to_stop():
    with pytest.raises(JobCancelled) as refused:
        ensure_running(stored("cancelled"))
    assert refused.value.job_id == JOB_ID
    assert only_issue(refused.value) == ("business-rule", "AsyncJob.status")


# --- cancellation ----------------------------------------------------------------------


def test_cancelling_an_accepted_job_changes_only_its_status():
    current = stored("accepted", output=OUTCOME)
    assert cancellation(current) == {**current, "status": "cancelled"}
    assert current["status"] == "accepted"


def test_cancelling_a_cancelled_job_is_no_change():
    assert cancellation(stored("cancelled")) is None


@pytest.mark.parametrize("status", ["completed", "error"])
def test_a_finished_job_cannot_be_cancelled(status: str):
    with pytest.raises(FhirError) as refused:
        cancellation(stored(status))
    assert only_issue(refused.value) == ("invalid", None)
    diagnostics = refused.value.issues[0].diagnostics
    assert "cannot be cancelled if status is not 'accepted'" in diagnostics
    assert f"job had status '{status}'" in diagnostics


# --- failure_outcome -------------------------------------------------------------------

OTHER = {"name": "count", "valueInteger": 3}
OUTCOMES: dict[str, tuple[Any, dict[str, Any] | None]] = {
    "no-output": (None, None),
    "output-without-parameters": ({"resourceType": "Parameters"}, None),
    "outcome-parameter": (OUTCOME, FAILURE),
    "outcome-after-other-parameters": (
        {
            "resourceType": "Parameters",
            "parameter": [OTHER, {"name": "outcome", "resource": FAILURE}],
        },
        FAILURE,
    ),
    "first-of-two-outcomes": (
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "outcome", "resource": FAILURE},
                {"name": "outcome", "resource": {**FAILURE, "id": "second"}},
            ],
        },
        FAILURE,
    ),
    "OperationOutcome-under-another-name": (
        {"resourceType": "Parameters", "parameter": [{"name": "result", "resource": FAILURE}]},
        None,
    ),
    "outcome-holding-another-resource": (
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "outcome", "resource": {"resourceType": "Patient"}}],
        },
        None,
    ),
    "outcome-as-a-value": (
        {"resourceType": "Parameters", "parameter": [{"name": "outcome", "valueString": "x"}]},
        None,
    ),
    "outcome-resource-not-an-object": (
        {"resourceType": "Parameters", "parameter": [{"name": "outcome", "resource": "x"}]},
        None,
    ),
}


@pytest.mark.parametrize(("output", "expected"), OUTCOMES.values(), ids=OUTCOMES.keys())
def test_the_failure_outcome_is_the_operation_outcome_parameter(
    output: Any, expected: dict[str, Any] | None
):
    assert failure_outcome(job("error", output=output)) == expected


# --- same_job --------------------------------------------------------------------------

SAME: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "identical": (job(), job()),
    "other-versionId": (job(meta={"versionId": "1"}), job(meta={"versionId": "2"})),
    "other-lastUpdated": (
        job(meta={"lastUpdated": "2026-01-01T00:00:00.000Z"}),
        job(meta={"lastUpdated": "2026-01-02T00:00:00.000Z"}),
    ),
    "server-meta-vs-no-meta": (job(meta=SERVER_META), job()),
    "empty-meta-vs-no-meta": (job(meta={}), job()),
    "same-other-meta": (
        job(meta={**SERVER_META, "source": "a"}),
        job(meta={"versionId": "9", "source": "a"}),
    ),
}
DIFFERENT: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "other-status": (job("accepted"), job("completed")),
    "added-element": (job(), job(transactionTime="2026-01-01T00:05:00.000Z")),
    "other-output": (job(), job(output=OUTCOME)),
    "other-meta-source": (job(meta={"source": "a"}), job(meta={"source": "b"})),
    "meta-tag-vs-no-meta": (job(meta={"tag": [{"code": "t"}]}), job()),
}


@pytest.mark.parametrize(("a", "b"), SAME.values(), ids=SAME.keys())
def test_jobs_differing_only_in_server_meta_are_the_same(a: dict[str, Any], b: dict[str, Any]):
    assert same_job(a, b)
    assert same_job(b, a)


@pytest.mark.parametrize(("a", "b"), DIFFERENT.values(), ids=DIFFERENT.keys())
def test_jobs_differing_in_anything_else_are_not_the_same(a: dict[str, Any], b: dict[str, Any]):
    assert not same_job(a, b)
    assert not same_job(b, a)


def test_a_final_job_sent_back_with_its_request_time_spelled_otherwise_changes_nothing():
    stored = make_job(
        status="completed",
        requestTime="2026-01-01T00:00:00.000Z",
        transactionTime="2026-01-01T00:05:00.000Z",
    )
    resent = {**stored, "requestTime": "2026-01-01T00:00:00Z"}
    assert updated_job(stored, resent) is None
