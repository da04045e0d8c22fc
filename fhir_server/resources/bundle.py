"""Bundles: searchset, history, and the responses to a batch or transaction."""

import uuid
from typing import Any, NamedTuple

from .instants import now_instant
from .outcome import Issue, operation_outcome


class Version(NamedTuple):
    """One version of a resource for a history Bundle; a deletion has no resource. The
    resource is anything orjson serializes as one (a dict, or the stored JSON as a Fragment).
    `method` wrote it (POST, PUT or DELETE); `created`: it created the resource."""

    id: str
    version: int
    last_updated: str
    resource: Any
    method: str
    created: bool


def _bundle(kind: str, total: int | None, links: list[tuple[str, str]]) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": now_instant()},
        "type": kind,
    }
    if total is not None:
        bundle["total"] = total
    bundle["link"] = [{"relation": rel, "url": url} for rel, url in links]
    return bundle


def searchset(
    base: str,
    resource_type: str,
    resources: list[tuple[str, Any]],
    *,
    total: int | None,
    links: list[tuple[str, str]],
    warnings: list[Issue],
) -> dict[str, Any]:
    bundle = _bundle("searchset", total, links)
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"{base}/{resource_type}/{resource_id}",
            "resource": resource,
            "search": {"mode": "match"},
        }
        for resource_id, resource in resources
    ]
    if warnings:
        entries.append({"resource": operation_outcome(warnings), "search": {"mode": "outcome"}})
    if entries:  # FHIR JSON has no empty arrays: no match, no `entry`
        bundle["entry"] = entries
    return bundle


def history(
    base: str,
    resource_type: str,
    versions: list[Version],
    *,
    total: int | None,
    links: list[tuple[str, str]],
) -> dict[str, Any]:
    bundle = _bundle("history", total, links)
    if versions:  # FHIR JSON has no empty arrays
        bundle["entry"] = [_history_entry(base, resource_type, version) for version in versions]
    return bundle


def _history_entry(base: str, resource_type: str, record: Version) -> dict[str, Any]:
    """The version and the request that wrote it, as a client would have sent it: a create
    by POST names the type (the server chose the id), a PUT or DELETE the resource."""
    url = f"{resource_type}/{record.id}"
    entry: dict[str, Any] = {"fullUrl": f"{base}/{url}"}
    if record.resource is not None:
        entry["resource"] = record.resource
    if record.method == "DELETE":
        status = "204 No Content"
    else:
        status = "201 Created" if record.created else "200 OK"
    entry["request"] = {
        "method": record.method,
        "url": resource_type if record.method == "POST" else url,
    }
    entry["response"] = {
        "status": status,
        "etag": f'W/"{record.version}"',
        "lastModified": record.last_updated,
    }
    return entry


def response_bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch-response or transaction-response: one entry per request entry, in order."""
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": now_instant()},
        "type": kind,
    }
    if entries:  # FHIR JSON has no empty arrays
        bundle["entry"] = entries
    return bundle
