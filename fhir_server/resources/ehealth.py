"""An AsyncJob as the `data` of Ukraine's eHealth (ЕСОЗ) job-status answers; no HTTP here.

Two views of one job: the job status of /Jobs/{id} (pending, processed, failed) and the
composition job status of /patients/composition/job/{id} (PENDING, DONE, FAILED).
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .failure import DEFAULT_FAILURE_STATUS, FAILED_MESSAGE, ISSUE_STATUS_CODES

# AsyncJob.extension carrying the instant a client should poll again (valueInstant).
ETA_EXTENSION_URL = "https://fhir-server.example.org/StructureDefinition/ehealth-eta"

CANCELLED_MESSAGE = "Job was cancelled"
CANCELLED_STATUS = 409

_ENTITY_CODE = ("valueCode", "valueString")
_HREF = ("valueUri", "valueUrl", "valueString")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


@dataclass(frozen=True, slots=True)
class JobView:
    """What an eHealth job-status answer says: its HTTP status and its `data`."""

    http_status: int
    data: dict[str, Any]


def job_status(
    resource: dict[str, Any], *, self_href: str, fhir_base: str, default_eta: timedelta
) -> JobView:
    """The /Jobs/{id} view; `self_href` is the job's own path, as the client called it."""
    eta = eta_of(resource, default_eta)
    status = resource.get("status")
    if status == "accepted":
        links = [{"entity": "job", "href": self_href}]
        return JobView(200, {"status": "pending", "eta": eta, "links": links})
    if status == "completed":
        processed: dict[str, Any] = {"status": "processed", "eta": eta, "status_code": "200"}
        response_data = _named_parameter(resource, "response_data")
        if response_data is not None:
            return JobView(200, {**processed, "response_data": parameter_value(response_data)})
        # 303 without a Location header: eHealth clients read the links from the body.
        return JobView(303, {**processed, "links": links_of(resource, fhir_base)})
    status_code, error = failure_of(resource)
    return JobView(
        200, {"status": "failed", "eta": eta, "status_code": status_code, "error": error}
    )


def composition_status(
    resource: dict[str, Any], *, self_href: str, fhir_base: str, default_eta: timedelta
) -> dict[str, Any]:
    """The /patients/composition/job/{id} view (always answered with HTTP 200)."""
    data: dict[str, Any] = {"id": resource["id"], "eta": eta_of(resource, default_eta)}
    status = resource.get("status")
    if status == "accepted":
        return {**data, "status": "PENDING", "links": []}
    if status == "completed":
        return {**data, "status": "DONE", "links": links_of(resource, fhir_base)}
    _, error = failure_of(resource)
    return {
        **data,
        "status": "FAILED",
        "links": [{"entity": "job", "href": self_href, "error": error}],
    }


def eta_of(resource: dict[str, Any], default_eta: timedelta) -> str:
    """The eta extension if the job has one, else requestTime + default_eta; UTC, ms, Z."""
    for extension in resource.get("extension") or []:
        if extension.get("url") == ETA_EXTENSION_URL and extension.get("valueInstant"):
            return format_instant(parse_instant(extension["valueInstant"]))
    return format_instant(parse_instant(resource["requestTime"]) + default_eta)


def parse_instant(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def format_instant(moment: datetime) -> str:
    """`2018-08-02T10:45:16.000Z`: the eHealth spelling of an instant."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def links_of(resource: dict[str, Any], fhir_base: str) -> list[dict[str, str]]:
    """The entities a job produced: `link` parameters verbatim, Reference values resolved."""
    links = []
    for parameter in _parameters(resource):
        if parameter.get("name") == "link":
            link = _link_parameter(parameter)
        elif isinstance(parameter.get("valueReference"), dict):
            link = _reference_link(parameter["valueReference"], fhir_base)
        else:
            link = None
        if link is not None:
            links.append(link)
    return links


def _link_parameter(parameter: dict[str, Any]) -> dict[str, str] | None:
    parts = {part.get("name"): part for part in parameter.get("part") or []}
    entity = _first_value(parts.get("entity"), _ENTITY_CODE)
    href = _first_value(parts.get("href"), _HREF)
    if entity is None or href is None:
        return None
    return {"entity": entity, "href": href}


def _reference_link(reference: dict[str, Any], fhir_base: str) -> dict[str, str] | None:
    target = reference.get("reference")
    if not isinstance(target, str) or not target or target.startswith("#"):
        return None
    segments = target.split("/_history/")[0].rstrip("/").split("/")
    resource_type = reference.get("type") or (segments[-2] if len(segments) >= 2 else None)
    if not resource_type:
        return None
    absolute = target if _ABSOLUTE_URI.match(target) else f"{fhir_base.rstrip('/')}/{target}"
    return {"entity": entity_name(resource_type), "href": absolute}


def entity_name(resource_type: str) -> str:
    """A FHIR resource type as an eHealth entity name: AllergyIntolerance -> allergy_intolerance."""
    return _CAMEL_BOUNDARY.sub("_", resource_type).lower()


def failure_of(resource: dict[str, Any]) -> tuple[str, str]:
    """(status_code, error message) of a failed or cancelled job."""
    if resource.get("status") == "cancelled":
        return str(CANCELLED_STATUS), CANCELLED_MESSAGE
    issue = _first_issue(resource)
    message = FAILED_MESSAGE
    if issue is not None:
        text = (issue.get("details") or {}).get("text") or issue.get("diagnostics")
        message = text or FAILED_MESSAGE
    explicit = _named_parameter(resource, "status_code")
    if explicit is not None:
        value = _first_value(explicit, ("valueInteger", "valueString"))
        if value is not None:
            return value, message
    code = issue.get("code") if issue is not None else None
    return str(ISSUE_STATUS_CODES.get(str(code), DEFAULT_FAILURE_STATUS)), message


def _first_issue(resource: dict[str, Any]) -> dict[str, Any] | None:
    for parameter in _parameters(resource):
        outcome = parameter.get("resource")
        if isinstance(outcome, dict) and outcome.get("resourceType") == "OperationOutcome":
            issues = outcome.get("issue") or []
            return issues[0] if issues else None
    return None


def parameter_value(parameter: dict[str, Any]) -> Any:
    """A Parameters.parameter as plain JSON: its value[x], its resource, or its parts as an
    object (a part name that repeats becomes a list)."""
    for key, value in parameter.items():
        if key.startswith("value"):
            return value
    if "resource" in parameter:
        return parameter["resource"]
    result: dict[str, Any] = {}
    for part in parameter.get("part") or []:
        name, value = part.get("name"), parameter_value(part)
        if name in result:
            previous = result[name]
            result[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            result[name] = value
    return result


def _parameters(resource: dict[str, Any]) -> list[dict[str, Any]]:
    output = resource.get("output") or {}
    return [p for p in output.get("parameter") or [] if isinstance(p, dict)]


def _named_parameter(resource: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((p for p in _parameters(resource) if p.get("name") == name), None)


def _first_value(parameter: dict[str, Any] | None, keys: tuple[str, ...]) -> str | None:
    if parameter is None:
        return None
    for key in keys:
        if parameter.get(key) is not None:
            return str(parameter[key])
    return None
