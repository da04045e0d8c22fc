"""How a failed job's request ended: its HTTP status and its OperationOutcome; no HTTP here.

One job shows one status everywhere: the FHIR status endpoint answers with it, the eHealth
adapter shows it in `status_code`. The producer may say it (the output parameter
`status_code`, which JobService.fail writes); else it follows from the first issue's type.
"""

from typing import Any

from .outcome import Issue, operation_outcome

# OperationOutcome.issue.code -> the HTTP status of the failed request.
ISSUE_STATUS_CODES = {
    "not-found": 404,
    "forbidden": 403,
    "security": 403,
    "invalid": 422,
    "required": 422,
    "value": 422,
    "structure": 422,
    "conflict": 409,
    "duplicate": 409,
    "business-rule": 409,
}
DEFAULT_FAILURE_STATUS = 500
FAILED_MESSAGE = "Job failed"
# Statuses a failed job never answers with on the FHIR API: a client takes them as a verdict on
# its own credentials (401, 407: re-authenticate) rather than on the job.
_CHALLENGES = frozenset({401, 407})


def failure_outcome(job: dict[str, Any]) -> dict[str, Any]:
    """The OperationOutcome the job's output holds (the first), else one saying it failed."""
    for parameter in parameters(job):
        outcome = parameter.get("resource")
        if isinstance(outcome, dict) and outcome.get("resourceType") == "OperationOutcome":
            return outcome
    return operation_outcome([Issue("exception", FAILED_MESSAGE)])


def failure_status(job: dict[str, Any]) -> int:
    """The 4xx or 5xx the failed request answers: the producer's `status_code` when it is
    one (and not an authentication challenge), else from the outcome's first issue, else
    500."""
    for parameter in parameters(job):
        if parameter.get("name") != "status_code":
            continue
        value = parameter.get("valueInteger", parameter.get("valueString"))
        text = str(value) if value is not None else ""
        status = int(text) if text.isascii() and text.isdigit() and len(text) == 3 else 0
        if 400 <= status <= 599 and status not in _CHALLENGES:
            return status
    issues = failure_outcome(job).get("issue") or [{}]
    return ISSUE_STATUS_CODES.get(str(issues[0].get("code")), DEFAULT_FAILURE_STATUS)


def parameters(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's output parameters (those that are JSON objects)."""
    output = job.get("output") or {}
    return [p for p in output.get("parameter") or [] if isinstance(p, dict)]
