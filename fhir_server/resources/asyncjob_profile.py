"""This server's AsyncJob profile: the job types it runs and the rules its jobs keep.

Medplum's AsyncJob binds `type` (required) to a value set holding only `data-migration`; ours
binds it to the types below, and `status` to the four of Medplum's status codes this server
uses (Medplum's value set also has `active`). The StructureDefinition
(definitions/StructureDefinition-AsyncJob.json) is Medplum's snapshot with those two bindings
changed; the CodeSystem and ValueSets are built from JOB_TYPES and STATUSES, which are also what
a write is checked against.

Their canonical URLs start with `[base]`, the server's FHIR base URL: the server serves these
definitions itself (api/conformance.py), so every URL it names resolves to it.
"""

import json
from importlib import resources
from typing import Any

from .kinds import BASE
from .outcome import Issue

PROFILE = f"{BASE}/StructureDefinition/AsyncJob"
JOB_TYPE_SYSTEM = f"{BASE}/CodeSystem/async-job-type"
JOB_TYPE_VALUE_SET = f"{BASE}/ValueSet/async-job-type"
STATUS_VALUE_SET = f"{BASE}/ValueSet/async-job-status"
# Medplum's CodeSystem of the status codes: ours are four of its five (no `active`).
STATUS_SYSTEM = "https://medplum.com/fhir/CodeSystem/async-job-status"
STATUSES = ("accepted", "error", "completed", "cancelled")
DATA_MIGRATION = "data-migration"

# code: (display, definition). The producers: examples/, the eHealth jobs (docs/ehealth.md).
JOB_TYPES: dict[str, tuple[str, str]] = {
    "bulk-export": (
        "Bulk Data export",
        "A FHIR Bulk Data $export: the output lists the NDJSON files written.",
    ),
    DATA_MIGRATION: (
        "Data migration",
        "A migration of stored data to a new data version (dataVersion), which needs at least "
        "the server version minServerVersion (Medplum's meaning).",
    ),
    "reindex": (
        "Reindex",
        "A $reindex: search indexes rebuilt for stored resources.",
    ),
    "transaction": (
        "Transaction",
        "A FHIR transaction Bundle processed asynchronously; the output references what it "
        "created.",
    ),
    "encounter-package": (
        "Encounter package",
        "An eHealth encounter package (an encounter with its clinical resources) submitted for "
        "a patient.",
    ),
    "composition-sign": (
        "Composition signing",
        "An eHealth Composition sent for a qualified electronic signature.",
    ),
    "approval": (
        "Approval",
        "An eHealth approval (a patient's consent to access) submitted for a patient.",
    ),
}


def profile_issues(job: dict[str, Any]) -> list[Issue]:
    """What a job (valid as Medplum's AsyncJob) breaks of this profile: the type binding and
    the invariant ajb-1. Both are answered 422 (api/http_status.py)."""
    issues = []
    job_type = job.get("type")
    if job_type is not None and not (isinstance(job_type, str) and job_type in JOB_TYPES):
        issues.append(
            Issue(
                "code-invalid",
                f"Unknown AsyncJob type {job_type!r}; expected one of {', '.join(JOB_TYPES)}",
                expression="AsyncJob.type",
            )
        )
    if job_type == DATA_MIGRATION:
        issues += [
            Issue(
                "invariant",
                f"ajb-1: a data-migration AsyncJob must have a {name}",
                expression=f"AsyncJob.{name}",
            )
            for name in ("dataVersion", "minServerVersion")
            if job.get(name) is None
        ]
    return issues


def _structure_definition() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("definitions/StructureDefinition-AsyncJob.json")
    definition: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return definition


def _code_system() -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "id": "async-job-type",
        "url": JOB_TYPE_SYSTEM,
        "name": "AsyncJobType",
        "title": "AsyncJob types",
        "status": "active",
        "description": "The kinds of work this server's AsyncJobs do.",
        "caseSensitive": True,
        "valueSet": JOB_TYPE_VALUE_SET,
        "content": "complete",
        "count": len(JOB_TYPES),
        "concept": [
            {"code": code, "display": display, "definition": definition}
            for code, (display, definition) in JOB_TYPES.items()
        ],
    }


def _value_set() -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "id": "async-job-type",
        "url": JOB_TYPE_VALUE_SET,
        "name": "AsyncJobType",
        "title": "AsyncJob types",
        "status": "active",
        "description": "Every code of the AsyncJob type CodeSystem.",
        "compose": {"include": [{"system": JOB_TYPE_SYSTEM}]},
    }


def _status_value_set() -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "id": "async-job-status",
        "url": STATUS_VALUE_SET,
        "name": "AsyncJobStatus",
        "title": "AsyncJob statuses",
        "status": "active",
        "description": "The statuses of this server's AsyncJobs: a job is accepted, then "
        "completed, failed (error) or cancelled.",
        "compose": {
            "include": [{"system": STATUS_SYSTEM, "concept": [{"code": code} for code in STATUSES]}]
        },
    }


# The conformance resources the AsyncJob kind brings (served read-only).
DEFINITIONS: tuple[dict[str, Any], ...] = (
    _structure_definition(),
    _code_system(),
    _value_set(),
    _status_value_set(),
)
