"""The CapabilityStatement, derived from the registered resource kinds."""

from typing import Any

from ..version import __version__
from .kinds import ResourceKind


def capability_statement(base: str, kinds: tuple[ResourceKind, ...]) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "kind": "instance",
        "software": {"name": "fhir-server", "version": __version__},
        "implementation": {"description": "AsyncJob FHIR server", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "resource": [_resource(base, kind) for kind in kinds],
                "interaction": [],
            }
        ],
    }


def _resource(base: str, kind: ResourceKind) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "type": kind.type,
        "profile": kind.profile,
        "interaction": [{"code": code} for code in kind.interactions],
        "versioning": "versioned",
        "readHistory": True,
        "conditionalRead": "full-support",
        "searchParam": [
            {
                "name": p.name,
                "definition": p.definition,
                "type": p.type,
                "documentation": p.description,
            }
            for p in kind.search_parameters
        ],
    }
    if kind.operations:  # FHIR JSON has no empty arrays
        resource["operation"] = [
            {
                "name": operation.name,
                "definition": f"{base}/OperationDefinition/{kind.type}-{operation.name}",
                "documentation": operation.description,
            }
            for operation in kind.operations
        ]
    return resource
