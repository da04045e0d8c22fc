"""_elements and _summary: return part of a resource, marked SUBSETTED."""

from typing import Any

from .kinds import ResourceKind

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "Resource encoded in summary mode",
}


def subset(
    kind: ResourceKind,
    resource: dict[str, Any],
    keep: tuple[str, ...] | None,
    summary: str | None,
) -> dict[str, Any]:
    """The resource reduced by _elements (keep) or _summary (true, text, data)."""
    if summary == "data":
        return _mark({k: v for k, v in resource.items() if k != "text"})
    if summary == "true":
        names: set[str] = set(kind.summary_elements)
    elif summary == "text":
        names = {*kind.mandatory_elements, "text"}
    elif keep is not None:
        names = {*kind.mandatory_elements, *keep}
    else:
        return resource
    return _mark({k: v for k, v in resource.items() if k in names})


def _mark(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta", {}))
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    return {**resource, "meta": meta}
