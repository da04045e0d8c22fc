"""The AsyncJob status rules, in one place, for every write path (REST and JobService).

accepted → accepted (progress) | completed | error | cancelled; the other three are final.
Entering completed or error stamps transactionTime; requestTime and request never change.
"""

from typing import Any

from ..resources.asyncjob import FINAL_STATUSES, validate_async_job
from ..resources.instants import now_instant, parse_instant_ms
from ..resources.outcome import FhirError, Issue
from ..storage.base import without_server_meta

INITIAL_STATUS = "accepted"
TRANSITIONS: dict[str, frozenset[str]] = {
    "accepted": frozenset({"accepted", "completed", "error", "cancelled"}),
    **{status: frozenset() for status in FINAL_STATUSES},
}
STAMPS_TRANSACTION_TIME = frozenset({"completed", "error"})
IMMUTABLE = ("requestTime", "request")


class RuleViolation(FhirError):
    """A write the status rules forbid (issue type business-rule): nothing is stored."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__(issues)

    @classmethod
    def one(cls, diagnostics: str, expression: str | None = None) -> "RuleViolation":
        return cls([Issue("business-rule", diagnostics, expression=expression)])


class JobCancelled(RuleViolation):
    """The job was cancelled: the worker running it should stop."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            [
                Issue(
                    "business-rule",
                    f"AsyncJob/{job_id} was cancelled and cannot change",
                    expression="AsyncJob.status",
                )
            ]
        )
        self.job_id = job_id


def new_job(resource: dict[str, Any]) -> dict[str, Any]:
    """The validated resource to store as version 1 (requestTime defaults to now)."""
    job = validate_async_job({"requestTime": now_instant(), **resource})
    if job["status"] != INITIAL_STATUS:
        raise RuleViolation.one(
            f"A new AsyncJob must have status '{INITIAL_STATUS}', not '{job['status']}'",
            "AsyncJob.status",
        )
    return job


def updated_job(current: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any] | None:
    """The validated resource to store over current, or None when it changes nothing.

    A missing requestTime keeps the stored one; FhirError 400 if invalid (422 if it breaks the
    profile in a way current did not), RuleViolation 422 if the rules forbid the change.
    """
    job = validate_async_job({"requestTime": current["requestTime"], **resource}, stored=current)
    if same_job(current, job):
        return None
    check_transition(current, job)
    return stamp_transaction_time(job)


def check_transition(current: dict[str, Any], job: dict[str, Any]) -> None:
    before, after = current["status"], job["status"]
    if before == "cancelled":
        raise JobCancelled(current["id"])
    if after not in TRANSITIONS[before]:
        raise RuleViolation.one(
            f"AsyncJob/{current['id']} is '{before}', a final status: it cannot change",
            "AsyncJob.status",
        )
    issues = [
        Issue(
            "business-rule",
            f"{name} cannot change after the job is created",
            expression=f"AsyncJob.{name}",
        )
        for name in IMMUTABLE
        if not _same_value(name, current.get(name), job.get(name))
    ]
    if after == "error" and failure_outcome(job) is None:
        issues.append(
            Issue(
                "business-rule",
                "A failed job must carry an OperationOutcome in output parameter 'outcome'",
                expression="AsyncJob.output",
            )
        )
    if issues:
        raise RuleViolation(issues)


def ensure_running(current: dict[str, Any]) -> None:
    """For producers: JobCancelled if the job was cancelled, RuleViolation if it is final."""
    if current["status"] == "cancelled":
        raise JobCancelled(current["id"])
    if current["status"] in FINAL_STATUSES:
        raise RuleViolation.one(
            f"AsyncJob/{current['id']} is already '{current['status']}'", "AsyncJob.status"
        )


def cancellation(current: dict[str, Any]) -> dict[str, Any] | None:
    """The cancelled job to store, None if already cancelled; 400 if it already ended."""
    if current["status"] == "cancelled":
        return None
    if current["status"] != INITIAL_STATUS:
        raise FhirError.of(
            "invalid",
            "AsyncJob cannot be cancelled if status is not 'accepted', "
            f"job had status '{current['status']}'",
        )
    return {**current, "status": "cancelled"}


def stamp_transaction_time(job: dict[str, Any]) -> dict[str, Any]:
    if job["status"] in STAMPS_TRANSACTION_TIME and "transactionTime" not in job:
        return {**job, "transactionTime": now_instant()}
    return job


def failure_outcome(job: dict[str, Any]) -> dict[str, Any] | None:
    """The OperationOutcome in the output parameter `outcome`, if there is one."""
    for parameter in (job.get("output") or {}).get("parameter", []):
        resource = parameter.get("resource")
        if (
            parameter.get("name") == "outcome"
            and isinstance(resource, dict)
            and resource.get("resourceType") == "OperationOutcome"
        ):
            return resource
    return None


def same_job(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal but for the server-owned meta elements; requestTime compared as an instant (a
    client may send back `…00Z` for a stored `…00.000Z`)."""
    a, b = without_server_meta(a), without_server_meta(b)
    if _same_value("requestTime", a.get("requestTime"), b.get("requestTime")):
        a, b = {**a, "requestTime": None}, {**b, "requestTime": None}
    return a == b


def _same_value(name: str, a: Any, b: Any) -> bool:
    if name == "requestTime" and isinstance(a, str) and isinstance(b, str):
        return parse_instant_ms(a) == parse_instant_ms(b)
    return bool(a == b)
