"""The Bulk Data manifest of a completed export job; no HTTP here.

Bulk Data Access (2.0, "Response - Complete Status") answers a finished export with a JSON
object that is not a FHIR resource: `transactionTime`, `request`, `requiresAccessToken`,
`output` and `error` (arrays, empty when there is nothing to list, as that spec asks).

A producer lists its files in the job's output, one parameter per file: `output` for data,
`error` for files of OperationOutcomes, each with the parts `type` (the resource type), `url`
and, optionally, `count`. The parameter `requiresAccessToken` (valueBoolean) says whether
downloading them needs the bearer token; without it they do (Bulk Data: true whenever the file
server and the FHIR API both take OAuth 2.0 tokens).
"""

from typing import Any

from .failure import parameters

BULK_EXPORT = "bulk-export"
FILE_KINDS = ("output", "error")
REQUIRES_ACCESS_TOKEN = "requiresAccessToken"


def export_manifest(job: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of a completed `bulk-export` job whose output lists files; else None
    (the job is answered as it is). The status rules set transactionTime on completion; a job
    written past them (loaded from a file) without one has no manifest either."""
    if job.get("type") != BULK_EXPORT or job.get("status") != "completed":
        return None
    if "transactionTime" not in job:
        return None
    files = {kind: _files(job, kind) for kind in FILE_KINDS}
    if not any(files.values()):
        return None
    return {
        "transactionTime": job["transactionTime"],
        "request": job["request"],
        "requiresAccessToken": _requires_access_token(job),
        "output": files["output"],
        "error": files["error"],
    }


def _files(job: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The file items of parameters named `kind`; one without a type or URL is no file."""
    items = []
    for parameter in parameters(job):
        if parameter.get("name") != kind:
            continue
        parts = {p.get("name"): p for p in parameter.get("part") or [] if isinstance(p, dict)}
        resource_type = _value(parts.get("type"), ("valueCode", "valueString"))
        url = _value(parts.get("url"), ("valueUri", "valueUrl", "valueString"))
        if not isinstance(resource_type, str) or not isinstance(url, str):
            continue
        item: dict[str, Any] = {"type": resource_type, "url": url}
        count = _value(parts.get("count"), ("valueInteger",))
        if isinstance(count, int):
            item["count"] = count
        items.append(item)
    return items


def _requires_access_token(job: dict[str, Any]) -> bool:
    for parameter in parameters(job):
        if parameter.get("name") == REQUIRES_ACCESS_TOKEN:
            value = parameter.get("valueBoolean")
            if isinstance(value, bool):
                return value
    return True


def _value(part: dict[str, Any] | None, keys: tuple[str, ...]) -> Any:
    if part is None:
        return None
    return next((part[k] for k in keys if k in part), None)
