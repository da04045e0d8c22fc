"""Bundles: searchset and history."""

import uuid
from typing import Any, NamedTuple

from .instants import now_instant
from .outcome import Issue, operation_outcome


class Version(NamedTuple):
    """One version of a resource for a history Bundle; a deletion has no resource. The
    resource is anything orjson serializes as one (a dict, or the stored JSON as a Fragment).
    """

    id: str
    version: int
    last_updated: str
    resource: Any


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
    bundle["entry"] = entries
    return bundle


def history(
    base: str, resource_type: str, versions: list[Version], *, self_url: str
) -> dict[str, Any]:
    bundle = _bundle("history", len(versions), [("self", self_url)])
    bundle["entry"] = [_history_entry(base, resource_type, version) for version in versions]
    return bundle


def _history_entry(base: str, resource_type: str, record: Version) -> dict[str, Any]:
    url = f"{resource_type}/{record.id}"
    entry: dict[str, Any] = {"fullUrl": f"{base}/{url}"}
    if record.resource is not None:
        entry["resource"] = record.resource
    if record.resource is None:
        method, status = "DELETE", "204 No Content"
    elif record.version == 1:
        method, status = "POST", "201 Created"
    else:
        method, status = "PUT", "200 OK"
    entry["request"] = {"method": method, "url": url}
    entry["response"] = {
        "status": status,
        "etag": f'W/"{record.version}"',
        "lastModified": record.last_updated,
    }
    return entry
