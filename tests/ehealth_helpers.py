"""Shared bits of the eHealth adapter tests: the host, a GET helper and output builders."""

import re
from typing import Any

import httpx

HOST = "http://testserver"
ETA_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
REQUEST_ID = "req-adasdoijasdojsda"


async def get(client: httpx.AsyncClient, path: str, **headers: str) -> httpx.Response:
    """GET an adapter path (absolute, outside the FHIR base) with the seed's request id."""
    return await client.get(HOST + path, headers={"X-Request-ID": REQUEST_ID, **headers})


def meta(code: int, path: str, request_id: str = REQUEST_ID) -> dict[str, Any]:
    return {"code": code, "url": HOST + path, "type": "object", "request_id": request_id}


def output(*parameters: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(parameters)}


def link(entity: str, href: str, entity_key: str = "valueCode", href_key: str = "valueUri"):
    return {
        "name": "link",
        "part": [{"name": "entity", entity_key: entity}, {"name": "href", href_key: href}],
    }


def reference(name: str, target: str) -> dict[str, Any]:
    return {"name": name, "valueReference": {"reference": target}}


def outcome(*issues: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "outcome",
        "resource": {"resourceType": "OperationOutcome", "issue": list(issues)},
    }


def issue(code: str, text: str | None = None, diagnostics: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"severity": "error", "code": code}
    if text is not None:
        result["details"] = {"text": text}
    if diagnostics is not None:
        result["diagnostics"] = diagnostics
    return result
