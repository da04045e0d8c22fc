"""The conformance resources this server defines and serves read-only, derived from the
registered kinds: each kind's own definitions (its profile's StructureDefinition, CodeSystem,
ValueSet), a SearchParameter for each search parameter that FHIR does not define for every
resource, an OperationDefinition for each operation.

Their canonical URLs start with [base]: `with_base` fills in the FHIR base URL the client
used (or the configured public one) when they are served, so each names where it is read.
"""

from typing import Any

import orjson

from .kinds import BASE, Operation, ResourceKind, SearchParameter

CONFORMANCE_TYPES = (
    "StructureDefinition",
    "SearchParameter",
    "OperationDefinition",
    "CodeSystem",
    "ValueSet",
)
# FHIR's definition of the `url` search parameter of every conformance resource.
URL_PARAMETER = "http://hl7.org/fhir/SearchParameter/conformance-url"
Definitions = dict[str, dict[str, dict[str, Any]]]


def conformance_resources(kinds: tuple[ResourceKind, ...]) -> Definitions:
    """Resource type -> id -> resource (canonical URLs under [base])."""
    by_type: Definitions = {resource_type: {} for resource_type in CONFORMANCE_TYPES}
    for kind in kinds:
        own = [
            *kind.definitions,
            *(search_parameter(kind, p) for p in kind.search_parameters if not p.common),
            *(operation_definition(kind, o) for o in kind.operations),
        ]
        for resource in own:
            by_type[resource["resourceType"]][resource["id"]] = resource
    return by_type


def search_parameter(kind: ResourceKind, parameter: SearchParameter) -> dict[str, Any]:
    return {
        "resourceType": "SearchParameter",
        "id": parameter.definition_id,
        "url": parameter.definition,
        "name": parameter.name,
        "status": "active",
        "description": parameter.description,
        "code": parameter.name,
        "base": [kind.type],
        "type": parameter.type,
        "expression": parameter.expression,
    }


def operation_definition(kind: ResourceKind, operation: Operation) -> dict[str, Any]:
    return {
        "resourceType": "OperationDefinition",
        "id": f"{kind.type}-{operation.name}",
        "url": kind.operation_definition(operation),
        "name": f"{kind.type}{operation.name.title().replace('-', '')}",
        "status": "active",
        "kind": "operation",
        "description": operation.description,
        # Only reads change nothing (SMART's r and s).
        "affectsState": operation.permission not in ("r", "s"),
        "code": operation.name,
        "resource": [kind.type],
        "system": False,
        "type": False,
        "instance": True,
        "parameter": [
            {"name": name, "use": "out", "min": 1, "max": "1", "type": type_name}
            for name, type_name in operation.outputs or (("return", operation.returns),)
        ],
    }


def with_base(resource: dict[str, Any], base: str) -> dict[str, Any]:
    """The resource with every [base] in its strings replaced by the FHIR base URL."""
    serialized = orjson.dumps(resource).replace(BASE.encode(), orjson.dumps(base)[1:-1])
    result: dict[str, Any] = orjson.loads(serialized)
    return result
