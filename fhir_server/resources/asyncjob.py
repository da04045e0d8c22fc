"""The AsyncJob resource (Medplum's definition) on fhir.resources, and its validation against
that definition and this server's profile (asyncjob_profile.py)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from .asyncjob_profile import (
    DEFINITIONS,
    JOB_TYPE_SYSTEM,
    PROFILE,
    STATUS_SYSTEM,
    STATUSES,
    profile_issues,
)
from .kinds import ID_PATTERN, Operation, ResourceKind, SearchParameter
from .outcome import FhirError, Issue

RESOURCE_TYPE = "AsyncJob"
FINAL_STATUSES = frozenset({"error", "completed", "cancelled"})
# Elements a client always gets back, whatever _elements or _summary asks for: the required
# ones, and those the invariant ajb-1 needs, so a subset of a job still conforms.
MANDATORY_ELEMENTS = (
    "resourceType",
    "id",
    "meta",
    "status",
    "requestTime",
    "request",
    "dataVersion",
    "minServerVersion",
)
# Elements flagged isSummary in the AsyncJob definition (everything but the bulky ones).
SUMMARY_ELEMENTS = (*MANDATORY_ELEMENTS, "implicitRules", "transactionTime", "type")
# Issue types of a job that is readable but breaks a binding or an invariant.
CONTENT_ISSUES = frozenset({"code-invalid", "invariant"})


def validate_async_job(data: Any, stored: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate a FHIR JSON AsyncJob and return its canonical JSON.

    Every problem is reported at once, each with its element path, as a FhirError: 400 when
    it cannot be read as an AsyncJob, 422 when it can but breaks a binding or an invariant of
    the profile (asyncjob_profile.py). An update
    passes `stored`, the version it replaces: a profile rule that version already broke (it was
    stored before the profile) does not stop the update, so no job becomes unchangeable.
    """
    if not isinstance(data, dict):
        raise FhirError.of("structure", "The body must be a JSON object (an AsyncJob)")
    if data.get("resourceType") != RESOURCE_TYPE:
        raise FhirError.of(
            "invalid",
            f"Expected resourceType 'AsyncJob', got {data.get('resourceType')!r}",
            "resourceType",
        )
    if (canonical := plain_job(data)) is not None:
        return canonical
    from .asyncjob_model import AsyncJob  # fhir.resources: imported when first needed

    issues: list[Issue] = []
    model: AsyncJob | None = None
    try:
        model = AsyncJob.model_validate(data)
    except ValidationError as exc:
        issues.extend(_issue_from_pydantic(error) for error in exc.errors())
    issues.extend(_rule_issues(data, {i.expression for i in issues}))
    reported = {i.expression for i in issues}
    inherited = {_key(i) for i in profile_issues(stored)} if stored is not None else set()
    issues += [
        issue
        for issue in profile_issues(data)
        if issue.expression not in reported and _key(issue) not in inherited
    ]
    if issues or model is None:
        # What cannot be read as an AsyncJob leads (400); wrong codes and broken invariants
        # of a readable one follow (422 when they are all there is).
        issues.sort(key=lambda issue: issue.code in CONTENT_ISSUES)
        raise FhirError(issues or [Issue("invalid", "Invalid AsyncJob")])
    dumped = orjson.loads(model.model_dump_json())
    return _prefer_original_strings(dumped, data)


# The plain job: only these elements, each a primitive (meta with its versionId and
# lastUpdated only). pydantic takes about 80 µs to validate and dump one; plain_job checks the
# same constraints by hand in a few, and leaves anything else to pydantic. The order is the
# model's (its dump's), so both give the same canonical JSON (test_asyncjob_fast_path.py).
_PLAIN_ORDER = (
    "resourceType",
    "id",
    "meta",
    "status",
    "requestTime",
    "transactionTime",
    "request",
    "type",
    "dataVersion",
    "minServerVersion",
)
_PLAIN = frozenset(_PLAIN_ORDER)
_REQUIRED = ("status", "requestTime", "request")
# fhir_core's patterns of the primitive types (fhir_core/types.py), as pydantic applies them.
_INSTANT = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|"
    r"3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|([+\-])((0[0-9]|"
    r"1[0-3]):[0-5][0-9]|14:00))"
)
_CODE = re.compile(r"[^\s]+(\s[^\s]+)*")
_URI = re.compile(r"\S+")
_STRING = re.compile(r"[ \r\n\t\S]+")
_MAX_STRING = 1024 * 1024
_INT32 = range(-(2**31), 2**31)


def _instant(value: Any) -> bool:
    if type(value) is not str or not _INSTANT.fullmatch(value):
        return False
    try:  # the pattern lets days through that no month has (2026-02-30)
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _plain_value(name: str, value: Any) -> bool:
    """Whether value is certainly valid for element `name` (False: let pydantic decide)."""
    if name == "status":
        return value in STATUSES and type(value) is str
    if name in ("requestTime", "transactionTime"):
        return _instant(value)
    if name == "id":
        return type(value) is str and ID_PATTERN.fullmatch(value) is not None
    if name == "dataVersion":
        return type(value) is int and value in _INT32
    if name == "meta":
        return (
            type(value) is dict
            and bool(value)
            and value.keys() <= {"versionId", "lastUpdated"}
            and _plain_value("id", value.get("versionId", "1"))
            and ("lastUpdated" not in value or _instant(value["lastUpdated"]))
        )
    if type(value) is not str or len(value) > _MAX_STRING:
        return False
    pattern = {"request": _URI, "type": _CODE}.get(name, _STRING)
    return pattern.fullmatch(value) is not None


def plain_job(data: dict[str, Any]) -> dict[str, Any] | None:
    """The canonical JSON of a valid plain job (see _PLAIN_ORDER), or None: not plain, or
    not valid, which pydantic then tells in full."""
    if not data.keys() <= _PLAIN or any(name not in data for name in _REQUIRED):
        return None
    for name, value in data.items():
        if name != "resourceType" and not _plain_value(name, value):
            return None
    if profile_issues(data):
        return None
    canonical = {name: data[name] for name in _PLAIN_ORDER if name in data}
    if "meta" in canonical:  # the model's order of its elements
        meta = canonical["meta"]
        canonical["meta"] = {k: meta[k] for k in ("versionId", "lastUpdated") if k in meta}
    return canonical


# What jobs usually carry: a result as Parameters (values, parts, references, an
# OperationOutcome), extensions. pydantic builds the validator of each such part the first time
# it meets one (10-70 ms each, holding the interpreter); warm_up does it at start instead of
# in some client's request.
_WARM_UP_JOB = {
    "resourceType": RESOURCE_TYPE,
    "id": "warm-up",
    "status": "error",
    "requestTime": "2026-01-01T00:00:00.000Z",
    "transactionTime": "2026-01-01T00:00:00.000Z",
    "request": "https://example.org/fhir/R4/$export",
    "extension": [{"url": "https://example.org/x", "valueString": "x"}],
    "output": {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "note", "valueString": "x"},
            {"name": "count", "valueInteger": 1},
            {"name": "link", "part": [{"name": "href", "valueUri": "https://example.org"}]},
            {"name": "target", "valueReference": {"reference": "Patient/1"}},
            {
                "name": "outcome",
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "exception"}],
                },
            },
        ],
    },
}


def warm_up() -> None:
    """Build the validators of what jobs usually hold (see _WARM_UP_JOB)."""
    validate_async_job(_WARM_UP_JOB)


def _rule_issues(data: dict[str, Any], reported: set[str | None]) -> list[Issue]:
    """Checks pydantic cannot express or stops short of once a field fails."""
    issues = []
    job_id = data.get("id")
    if (
        job_id is not None
        and not (isinstance(job_id, str) and ID_PATTERN.fullmatch(job_id))
        and "AsyncJob.id" not in reported
    ):
        issues.append(Issue("value", f"Invalid id {job_id!r}", expression="AsyncJob.id"))
    for name in ("status", "requestTime", "request"):
        path = f"AsyncJob.{name}"
        if data.get(name) is None and path not in reported:
            issues.append(Issue("required", f"Missing required element '{name}'", expression=path))
    status = data.get("status")
    if status is not None and status not in STATUSES:
        issues.append(
            Issue(
                "code-invalid",
                f"Unknown status {status!r}; expected one of {', '.join(STATUSES)}",
                expression="AsyncJob.status",
            )
        )
    issues += [
        Issue("structure", f"Empty {kind} at '{path}': FHIR JSON leaves it out", expression=path)
        for path, kind in _empty_values(data, RESOURCE_TYPE)
    ]
    return issues


def _empty_values(value: Any, path: str) -> list[tuple[str, str]]:
    """(path, 'array', 'object' or 'string') of every empty one: FHIR JSON has none."""
    if isinstance(value, dict):
        if not value:
            return [(path, "object")]
        return [
            found for key, item in value.items() for found in _empty_values(item, f"{path}.{key}")
        ]
    if isinstance(value, list):
        if not value:
            return [(path, "array")]
        return [
            found for n, item in enumerate(value) for found in _empty_values(item, f"{path}[{n}]")
        ]
    if value == "":
        return [(path, "string")]
    return []


def _key(issue: Issue) -> tuple[str, str | None, str]:
    """The same problem with the same value (the diagnostics name the wrong code)."""
    return issue.code, issue.expression, issue.diagnostics


def _issue_from_pydantic(error: Any) -> Issue:
    path = _fhir_path(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return Issue("structure", f"Unknown element '{path}'", expression=path)
    if kind in ("missing", "model_field_validation.missing"):
        name = str(error["loc"][-1]) if error["loc"] else path
        return Issue("required", f"Missing required element '{name}'", expression=path)
    message = str(error["msg"]).split("\n")[0].strip()
    return Issue("value", f"Invalid value at '{path}': {message}", expression=path)


def _fhir_path(loc: tuple[Any, ...]) -> str:
    path = RESOURCE_TYPE
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "resource_type":
            path += ".resourceType"
        elif part != "__root__":
            path += f".{part}"
    return path


def _prefer_original_strings(dumped: Any, original: Any) -> Any:
    """Keep the client's own spelling of strings (e.g. instant precision), the model's types."""
    if isinstance(dumped, dict) and isinstance(original, dict):
        return {k: _prefer_original_strings(v, original.get(k)) for k, v in dumped.items()}
    if isinstance(dumped, list) and isinstance(original, list) and len(dumped) == len(original):
        return [_prefer_original_strings(d, o) for d, o in zip(dumped, original, strict=True)]
    if isinstance(dumped, str) and isinstance(original, str):
        return original
    return dumped


SEARCH_PARAMETERS: tuple[SearchParameter, ...] = (
    SearchParameter("_id", "token", "AsyncJob.id", "Logical id of the AsyncJob", "id", ("id",)),
    SearchParameter(
        "_lastUpdated",
        "date",
        "AsyncJob.meta.lastUpdated",
        "When the AsyncJob last changed",
        "last_updated",
        ("meta", "lastUpdated"),
    ),
    SearchParameter(
        "status",
        "token",
        "AsyncJob.status",
        "Search for AsyncJob by status",
        "status",
        ("status",),
        system=STATUS_SYSTEM,
    ),
    SearchParameter(
        "type",
        "token",
        "AsyncJob.type",
        "Search for AsyncJob by type",
        "type",
        ("type",),
        system=JOB_TYPE_SYSTEM,
    ),
    SearchParameter(
        "request-time",
        "date",
        "AsyncJob.requestTime",
        "When the job was requested",
        "request_time",
        ("requestTime",),
    ),
    SearchParameter(
        "transaction-time",
        "date",
        "AsyncJob.transactionTime",
        "When the job ran (completed or failed)",
        "transaction_time",
        ("transactionTime",),
    ),
)

ASYNC_JOB = ResourceKind(
    type=RESOURCE_TYPE,
    description="Long-running asynchronous jobs: exports, migrations, signing",
    profile=PROFILE,
    validate=validate_async_job,
    search_parameters=SEARCH_PARAMETERS,
    default_sort=(("last_updated", True),),
    mandatory_elements=MANDATORY_ELEMENTS,
    summary_elements=SUMMARY_ELEMENTS,
    # Cancelling changes the job's status: an update.
    operations=(Operation("cancel", "u", "Cancel an accepted AsyncJob"),),
    definitions=DEFINITIONS,
)
