"""GET /openapi.json: every endpoint, its parameters, body, scope and answers (public).

The FHIR paths, search parameters and scopes come from the registered resource kinds; a test
checks that every route of the app is described here.
"""

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..auth.policy import interaction_access
from ..notifications.websocket import PATH as WS_PATH
from ..resources import registry
from ..resources.asyncjob import ASYNC_JOB
from ..resources.asyncjob_profile import JOB_TYPES
from ..resources.conformance import CONFORMANCE_TYPES
from ..resources.kinds import ResourceKind
from ..resources.subscription import CHANNEL_TYPES
from ..resources.subscription import STATUSES as SUBSCRIPTION_STATUSES
from ..search.parse import HTTP_PARAMETERS, RESULT_PARAMETERS
from ..version import __version__
from .console import ASSET_PATH, CONSOLE_PATH
from .ehealth import COMPOSITION_PREFIXES, JOB_PREFIXES
from .responses import FhirResponse
from .urls import BASE_PATH, SMART_CONFIGURATION_PATH, STATUS_PATH, TOKEN_PATH

OPENAPI_PATH = "/openapi.json"
_FHIR_JSON = "application/fhir+json"
_OUTCOME = {"$ref": "#/components/schemas/OperationOutcome"}
_ENVELOPE = {"$ref": "#/components/schemas/EhealthEnvelope"}
_OAUTH_ERROR = {"$ref": "#/components/schemas/OAuthError"}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


_ID = _path_param("id", "Logical id ([A-Za-z0-9-.]{1,64})")
_VID = _path_param("vid", "Version id (1, 2, …)")
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": 'Write only if the stored version is this ETag (W/"n"); else 412',
    "schema": {"type": "string"},
}


def _query_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }


def _search_params(kind: ResourceKind) -> list[dict[str, Any]]:
    return [
        *(
            {
                "name": p.name,
                "in": "query",
                "required": False,
                "description": f"{p.type}: {p.description}",
                "schema": {"type": "string"},
            }
            for p in kind.search_parameters
        ),
        *(
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
            for name in sorted(RESULT_PARAMETERS | HTTP_PARAMETERS)
        ),
    ]


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_FHIR_JSON: {"schema": _OUTCOME}}}


def _json_body(schema: dict[str, Any], media_type: str = _FHIR_JSON) -> dict[str, Any]:
    return {"required": True, "content": {media_type: {"schema": schema}}}


_THROTTLED = "over the owner's request rate (FHIR_SERVER_RATE_LIMIT)"
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}


def _fhir_answers(*ok: tuple[int, str]) -> dict[str, Any]:
    answers: dict[str, Any] = {
        str(code): {"description": text, "content": {_FHIR_JSON: {"schema": {"type": "object"}}}}
        for code, text in ok
    }
    for code, text in (
        (400, "invalid request"),
        (401, "missing or invalid bearer token"),
        (403, "the token lacks the scope, or a write would pass the owner's quota"),
        (404, "unknown (or another owner's) job"),
        (413, "body too large"),
        (415, "not JSON"),
        (429, _THROTTLED),
    ):
        answers.setdefault(
            str(code), {"description": text, "content": {_FHIR_JSON: {"schema": _OUTCOME}}}
        )
    answers["429"]["headers"] = _RETRY_AFTER
    return answers


def _ehealth_answers() -> dict[str, Any]:
    json = {"application/json": {"schema": _ENVELOPE}}
    return {
        str(code): {"description": text, "content": json}
        for code, text in (
            (200, "job status in the eHealth envelope"),
            (303, "processed job, with a link to its result"),
            (400, "invalid id"),
            (401, "access_denied: missing or invalid bearer token"),
            (403, "forbidden: the token lacks the scope"),
            (404, "not_found"),
        )
    } | {
        "429": {
            "description": f"too_many_requests: {_THROTTLED}",
            "content": json,
            "headers": _RETRY_AFTER,
        }
    }


def _op(
    summary: str,
    scope: str,
    parameters: list[dict[str, Any]],
    answers: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    operation = {
        "summary": summary,
        "description": f"Needs scope {scope}.",
        "parameters": parameters,
        "responses": answers,
        "security": [{"bearer": []}],
    }
    operation.update(extra)
    return operation


_FORM = {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}


def _needs(kind: ResourceKind, interaction: str) -> str:
    """The scope an interaction needs, in words: `system/AsyncJob.rs (or .read)`."""
    access = interaction_access(kind, interaction)
    return f"{access.scope} (or .{access.missing.rsplit('.', 1)[1]})"


def _kind_paths(kind: ResourceKind) -> dict[str, dict[str, Any]]:
    base = f"{BASE_PATH}/{kind.type}"
    schema = {"$ref": f"#/components/schemas/{kind.type}"}
    search = _search_params(kind)
    paths: dict[str, dict[str, Any]] = {
        base: {
            "get": _op(
                "search", _needs(kind, "search-type"), search, _fhir_answers((200, "searchset"))
            ),
            "post": _op(
                "create",
                _needs(kind, "create"),
                [],
                _fhir_answers((201, "created")),
                requestBody=_json_body(schema),
            ),
        },
        f"{base}/_search": {
            "post": _op(
                "search (form body merged with the URL's parameters)",
                _needs(kind, "search-type"),
                search,
                _fhir_answers((200, "searchset Bundle")),
                requestBody={"required": False, "content": _FORM},
            )
        },
        f"{base}/{{id}}": {
            "get": _op(
                "read",
                _needs(kind, "read"),
                [_ID],
                _fhir_answers((200, kind.type), (410, "deleted")),
            ),
            "put": _op(
                "update (or create with this id)",
                _needs(kind, "update"),
                [_ID, _IF_MATCH],
                _fhir_answers(
                    (200, "updated"), (201, "created"), (409, "id taken"), (412, "stale")
                ),
                requestBody=_json_body(schema),
            ),
            "delete": _op(
                "delete",
                _needs(kind, "delete"),
                [_ID, _IF_MATCH],
                _fhir_answers((204, "deleted"), (412, "stale")),
            ),
        },
        f"{base}/_history": {
            "get": _op(
                "history of every resource of the type, newest first",
                _needs(kind, "history-type"),
                [
                    _query_param("_since", "instant: versions written at or after it"),
                    _query_param("_count", "entries per page (default 20, at most 1000)"),
                    _query_param("_cursor", "the position a next/previous link carries"),
                ],
                _fhir_answers((200, "history Bundle")),
            )
        },
        f"{base}/{{id}}/_history": {
            "get": _op(
                "history",
                _needs(kind, "history-instance"),
                [_ID],
                _fhir_answers((200, "history Bundle")),
            )
        },
        f"{base}/{{id}}/_history/{{vid}}": {
            "get": _op(
                "vread",
                _needs(kind, "vread"),
                [_ID, _VID],
                _fhir_answers((200, f"{kind.type} version")),
            )
        },
    }
    for operation in kind.operations:
        answer = "All OK" if operation.returns == "OperationOutcome" else operation.returns
        if operation.outputs:
            answer += ": " + ", ".join(name for name, _ in operation.outputs)
        paths[f"{base}/{{id}}/${operation.name}"] = {
            method.lower(): _op(
                operation.description,
                _needs(kind, f"${operation.name}"),
                [_ID],
                _fhir_answers((200, answer)),
            )
            for method in operation.methods
        }
    return paths


def _definition_paths(resource_type: str) -> dict[str, dict[str, Any]]:
    """A conformance resource type: read and search by url, public and read-only."""
    url = {
        "name": "url",
        "in": "query",
        "required": False,
        "description": "uri: the canonical URL",
        "schema": {"type": "string"},
    }
    return {
        f"{BASE_PATH}/{resource_type}": {
            "get": {
                "summary": f"search {resource_type} definitions by url (public)",
                "parameters": [url],
                "responses": _fhir_answers((200, "searchset")),
                "security": [],
            }
        },
        f"{BASE_PATH}/{resource_type}/{{id}}": {
            "get": {
                "summary": f"read a {resource_type} this server defines (public)",
                "parameters": [_ID],
                "responses": _fhir_answers((200, resource_type)),
                "security": [],
            }
        },
    }


def _paths(kinds: tuple[ResourceKind, ...]) -> dict[str, dict[str, Any]]:
    paths: dict[str, dict[str, Any]] = {
        f"{BASE_PATH}/metadata": {
            "get": {
                "summary": "CapabilityStatement (public)",
                "responses": _fhir_answers((200, "CapabilityStatement")),
                "security": [],
            }
        },
        BASE_PATH: {
            "post": _op(
                "batch or transaction Bundle",
                "",
                [],
                {
                    **_fhir_answers(
                        (200, "batch-response or transaction-response Bundle"),
                        (409, "a transaction's job was changed meanwhile: nothing stored"),
                        (412, "a transaction entry's ifMatch met another version"),
                        (422, "a transaction entry broke the rules: nothing stored"),
                        (501, "this MongoDB deployment offers no transactions"),
                    ),
                    "413": {
                        "description": "body too large, or more entries than max_bundle_entries",
                        "content": {_FHIR_JSON: {"schema": _OUTCOME}},
                    },
                },
                requestBody=_json_body({"type": "object"}),
                description="Needs scope of each entry's own interaction, as its single "
                "request would (an accepted token for the Bundle itself).",
            )
        },
        STATUS_PATH: {
            "get": _op(
                "poll (asynchronous request pattern)",
                _needs(ASYNC_JOB, "read"),
                [_ID],
                _fhir_answers((200, "final AsyncJob"), (202, "running AsyncJob")),
            ),
            "delete": _op(
                "cancel", _needs(ASYNC_JOB, "update"), [_ID], _fhir_answers((202, "cancelled"))
            ),
        },
        SMART_CONFIGURATION_PATH: {
            "get": {
                "summary": "SMART discovery: the token endpoint and what it accepts (public)",
                "responses": {"200": {"description": "SMART configuration (JSON)"}},
                "security": [],
            }
        },
        TOKEN_PATH: {
            "post": {
                "summary": "SMART Backend Services token: client_credentials with a "
                "private_key_jwt assertion (RS384, ES384) (public)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "required": [
                                    "grant_type",
                                    "client_assertion_type",
                                    "client_assertion",
                                ],
                                "properties": {
                                    "grant_type": {"const": "client_credentials"},
                                    "scope": {"type": "string"},
                                    "client_assertion_type": {
                                        "const": "urn:ietf:params:oauth:client-assertion-type:"
                                        "jwt-bearer"
                                    },
                                    "client_assertion": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {"description": "access_token, token_type, expires_in, scope"},
                    "400": {
                        "description": "invalid_request, invalid_scope, unsupported_grant_type",
                        "content": {"application/json": {"schema": _OAUTH_ERROR}},
                    },
                    "401": {
                        "description": "invalid_client: the assertion is refused",
                        "content": {"application/json": {"schema": _OAUTH_ERROR}},
                    },
                },
                "security": [],
            }
        },
        "/healthz": {
            "get": {
                "summary": "liveness (public)",
                "responses": {"200": {"description": "ok"}},
                "security": [],
            }
        },
        "/readyz": {
            "get": {
                "summary": "readiness: the store answers (public)",
                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
                "security": [],
            }
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics",
                "the admin scope (FHIR_SERVER_ADMIN_SCOPE, default system/*.*)",
                [],
                {
                    "200": {"description": "text exposition format"},
                    "401": {"description": "missing or invalid bearer token"},
                    "403": {"description": "the token lacks the admin scope"},
                },
            )
        },
        WS_PATH: {
            "get": {
                "summary": "Subscriptions' WebSocket (Medplum's protocol): upgrade, then "
                "bind-with-token with a $get-ws-binding-token token; notifications as "
                "history Bundles",
                "responses": {
                    "101": {"description": "switching to the WebSocket protocol"},
                    "404": {"description": "not a WebSocket upgrade request"},
                },
                "security": [],
            }
        },
        OPENAPI_PATH: {
            "get": {
                "summary": "this document (public)",
                "responses": {"200": {"description": "OpenAPI 3.1"}},
                "security": [],
            }
        },
        "/": {
            "get": {
                "summary": "a browser (Accept: text/html) is sent to the job console (public)",
                "responses": {
                    "303": {"description": "to /console"},
                    "401": _error("no bearer token (any client but a browser)"),
                    "404": _error("no endpoint here (any client but a browser)"),
                },
                "security": [],
            }
        },
        CONSOLE_PATH: {
            "get": {
                "summary": "the job console, a browser page over this API (public: no data)",
                "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
                "security": [],
            }
        },
        ASSET_PATH: {
            "get": {
                "summary": "a script or style sheet of the job console (public)",
                "parameters": [_path_param("name", "file name, e.g. app.js")],
                "responses": {
                    "200": {"description": "the file"},
                    "404": _error("no such file"),
                },
                "security": [],
            }
        },
    }
    for kind in kinds:
        paths.update(_kind_paths(kind))
    for resource_type in CONFORMANCE_TYPES:
        paths.update(_definition_paths(resource_type))
    for prefix in JOB_PREFIXES:
        paths[f"{prefix}/{{id}}"] = {
            "get": _op("eHealth job status", "job:read", [_ID], _ehealth_answers())
        }
    for prefix in COMPOSITION_PREFIXES:
        uuid_id = _path_param("id", "Job id (a UUID)")
        paths[f"{prefix}/{{id}}"] = {
            "get": _op(
                "eHealth composition job status", "composition:read", [uuid_id], _ehealth_answers()
            )
        }
    return paths


def openapi_document(kinds: tuple[ResourceKind, ...] | None = None) -> dict[str, Any]:
    """The document for an app serving `kinds` (the registry's by default)."""
    kinds = registry.KINDS if kinds is None else kinds
    return {
        "openapi": "3.1.0",
        "info": {"title": "fhir-server", "version": __version__},
        "paths": _paths(kinds),
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "schemas": {
                "AsyncJob": {
                    "type": "object",
                    "required": ["resourceType", "status", "requestTime", "request"],
                    "properties": {
                        "resourceType": {"const": "AsyncJob"},
                        "id": {"type": "string"},
                        "status": {"enum": ["accepted", "error", "completed", "cancelled"]},
                        "requestTime": {"type": "string", "format": "date-time"},
                        "transactionTime": {"type": "string", "format": "date-time"},
                        "request": {"type": "string", "format": "uri"},
                        "type": {"enum": list(JOB_TYPES)},
                        "dataVersion": {"type": "integer"},
                        "minServerVersion": {"type": "string"},
                        "output": {"type": "object"},
                    },
                },
                "Subscription": {
                    "type": "object",
                    "required": ["resourceType", "status", "reason", "criteria", "channel"],
                    "properties": {
                        "resourceType": {"const": "Subscription"},
                        "id": {"type": "string"},
                        "status": {"enum": list(SUBSCRIPTION_STATUSES)},
                        "reason": {"type": "string"},
                        "criteria": {"type": "string", "examples": ["AsyncJob?status=completed"]},
                        "end": {"type": "string", "format": "date-time"},
                        "channel": {
                            "type": "object",
                            "required": ["type"],
                            "properties": {
                                "type": {"enum": list(CHANNEL_TYPES)},
                                "endpoint": {"type": "string", "format": "uri"},
                                "payload": {"type": "string"},
                                "header": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                        "extension": {"type": "array", "items": {"type": "object"}},
                    },
                },
                "OperationOutcome": {
                    "type": "object",
                    "required": ["resourceType", "issue"],
                    "properties": {
                        "resourceType": {"const": "OperationOutcome"},
                        "issue": {"type": "array", "items": {"type": "object"}},
                    },
                },
                "OAuthError": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "error_description": {"type": "string"},
                    },
                },
                "EhealthEnvelope": {
                    "type": "object",
                    "required": ["meta"],
                    "properties": {
                        "data": {"type": "object"},
                        "error": {"type": "object"},
                        "meta": {"type": "object"},
                    },
                },
            },
        },
    }


async def openapi_json(request: Request) -> Response:
    return FhirResponse(openapi_document(request.app.state.kinds), media_type="application/json")
