"""The CapabilityStatement, derived from the registered resource kinds.

Every URL it names resolves: a definition FHIR publishes, or one this server serves
(resources/conformance.py; [base] is filled in with the FHIR base URL).
"""

from typing import Any

from ..version import __version__
from .conformance import CONFORMANCE_TYPES, URL_PARAMETER, with_base
from .kinds import ResourceKind

CORE_PROFILE = "http://hl7.org/fhir/StructureDefinition"
# FHIR R4's extension naming where a server's subscription WebSocket is.
WEBSOCKET_EXTENSION = f"{CORE_PROFILE}/capabilitystatement-websocket"


def capability_statement(
    base: str,
    kinds: tuple[ResourceKind, ...],
    token_url: str | None = None,
    websocket_url: str | None = None,
) -> dict[str, Any]:
    """`token_url`: where clients get bearer tokens (None: no token needed); `websocket_url`:
    the subscriptions' WebSocket (None: no Subscription kind served)."""
    statement: dict[str, Any] = {
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
                # POST [base] takes batch and transaction Bundles (api/bundles.py); no
                # whole-system search or history is served.
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                "resource": [
                    *(_resource(kind) for kind in kinds),
                    *(_conformance_resource(t) for t in CONFORMANCE_TYPES),
                ],
            }
        ],
    }
    if websocket_url is not None:
        statement["rest"][0]["extension"] = [
            {"url": WEBSOCKET_EXTENSION, "valueUri": websocket_url}
        ]
    if token_url is not None:
        statement["rest"][0]["security"] = _security(token_url)
    return with_base(statement, base)


def _security(token_url: str) -> dict[str, Any]:
    """SMART on FHIR: the service coding and the oauth-uris extension clients read the token
    endpoint from (fhirclient, fhir-kit-client)."""
    return {
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [{"url": "token", "valueUri": token_url}],
            }
        ],
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                        "display": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth2 bearer tokens, SMART on FHIR scopes (SMART Backend Services)",
            }
        ],
        "description": "Every request but metadata and .well-known/smart-configuration needs "
        "`Authorization: Bearer <token>`. Backend services get a token at the token endpoint "
        "(client_credentials, private_key_jwt with RS384 or ES384); scopes such as "
        "system/AsyncJob.rs grant the interactions.",
    }


def _resource(kind: ResourceKind) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "type": kind.type,
        "profile": kind.profile,
        "interaction": [{"code": code} for code in kind.interactions],
        # Writes honour If-Match (412 for another version).
        "versioning": "versioned-update",
        "readHistory": "vread" in kind.access,
        "updateCreate": "update" in kind.access,  # PUT to a new id creates it (201)
        "conditionalRead": "full-support",  # If-None-Match and If-Modified-Since
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
                "definition": kind.operation_definition(operation),
                "documentation": operation.description,
            }
            for operation in kind.operations
        ]
    return resource


def _conformance_resource(resource_type: str) -> dict[str, Any]:
    """The definitions this server serves: read, and search by url."""
    return {
        "type": resource_type,
        "profile": f"{CORE_PROFILE}/{resource_type}",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [{"name": "url", "definition": URL_PARAMETER, "type": "uri"}],
    }
