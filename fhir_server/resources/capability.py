"""The CapabilityStatement, derived from the search-parameter list."""

from typing import Any

from .. import __version__
from ..search.parameters import SEARCH_PARAMETERS
from .asyncjob import RESOURCE_TYPE

DEFINITION_URL = "https://medplum.com/fhir/StructureDefinition/AsyncJob"


def capability_statement(base: str, interactions: tuple[str, ...]) -> dict[str, Any]:
    search_params = [
        {"name": p.name, "definition": p.definition, "type": p.type, "documentation": p.description}
        for p in SEARCH_PARAMETERS
    ]
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
                "resource": [
                    {
                        "type": RESOURCE_TYPE,
                        "profile": DEFINITION_URL,
                        "interaction": [{"code": code} for code in interactions],
                        "versioning": "versioned",
                        "readHistory": True,
                        "conditionalRead": "full-support",
                        "searchParam": search_params,
                        "operation": [
                            {
                                "name": "cancel",
                                "definition": f"{base}/OperationDefinition/AsyncJob-cancel",
                                "documentation": "Cancel an accepted AsyncJob",
                            }
                        ],
                    }
                ],
                "interaction": [],
            }
        ],
    }
