"""The Subscription resource (FHIR R4): what a client subscribes to (criteria, a search of a
served type) and how it is told (channel: websocket, or rest-hook with Medplum's signing
secret). The criteria are checked against the search parameters by the writer
(notifications/writer.py): parsing them is the search layer's work, above this one."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import orjson
from fhir.resources.R4B.subscription import Subscription
from pydantic import ValidationError

from .instants import parse_instant_ms
from .kinds import ID_PATTERN, Operation, ResourceKind, SearchParameter
from .outcome import FhirError, Issue

RESOURCE_TYPE = "Subscription"
PROFILE = "http://hl7.org/fhir/StructureDefinition/Subscription"
STATUS_SYSTEM = "http://hl7.org/fhir/subscription-status"
CHANNEL_TYPE_SYSTEM = "http://hl7.org/fhir/subscription-channel-type"
STATUSES = ("requested", "active", "error", "off")
# The channels this server delivers on; FHIR's others (email, sms, message) are refused.
CHANNEL_TYPES = ("websocket", "rest-hook")
# What a rest-hook POST may carry: FHIR JSON (the notification Bundle), or nothing.
PAYLOADS = ("application/fhir+json", "application/json")
# Medplum's extensions of a rest-hook subscription: the key of the body's HMAC-SHA256
# signature (X-Signature), and how many times a delivery is tried.
SECRET_EXTENSION = "https://medplum.com/fhir/StructureDefinition/subscription-secret"
MAX_ATTEMPTS_EXTENSION = "https://medplum.com/fhir/StructureDefinition/subscription-max-attempts"
WS_BINDING_TOKEN = "get-ws-binding-token"
MANDATORY_ELEMENTS = ("resourceType", "id", "meta", "status", "reason", "criteria", "channel")
SUMMARY_ELEMENTS = (*MANDATORY_ELEMENTS, "implicitRules", "contact", "end")


def validate_subscription(data: Any) -> dict[str, Any]:
    """A FHIR R4 Subscription's canonical JSON; FhirError listing every problem (400, or 422
    for a readable one with a code this server does not know)."""
    if not isinstance(data, dict):
        raise FhirError.of("structure", "The body must be a JSON object (a Subscription)")
    if data.get("resourceType") != RESOURCE_TYPE:
        raise FhirError.of(
            "invalid",
            f"Expected resourceType 'Subscription', got {data.get('resourceType')!r}",
            "resourceType",
        )
    issues: list[Issue] = []
    model: Subscription | None = None
    try:
        model = Subscription.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            path = ".".join(str(p) for p in (RESOURCE_TYPE, *error["loc"]) if p != "__root__")
            message = str(error["msg"]).split("\n")[0].strip()
            issues.append(Issue("value", f"Invalid value at '{path}': {message}", expression=path))
    issues += _rule_issues(data)
    if issues or model is None:
        issues.sort(key=lambda issue: issue.code == "code-invalid")
        raise FhirError(issues or [Issue("invalid", "Invalid Subscription")])
    dumped: dict[str, Any] = orjson.loads(model.model_dump_json())
    return dumped


def _rule_issues(data: dict[str, Any]) -> list[Issue]:
    issues = []
    resource_id = data.get("id")
    if resource_id is not None and not (
        isinstance(resource_id, str) and ID_PATTERN.fullmatch(resource_id)
    ):
        issues.append(Issue("value", f"Invalid id {resource_id!r}", expression="Subscription.id"))
    for name in ("status", "reason", "criteria", "channel"):
        if data.get(name) in (None, "", {}):
            issues.append(
                Issue(
                    "required",
                    f"Missing required element '{name}'",
                    expression=f"Subscription.{name}",
                )
            )
    status = data.get("status")
    if status is not None and status not in STATUSES:
        issues.append(
            Issue(
                "code-invalid",
                f"Unknown status {status!r}; expected one of {', '.join(STATUSES)}",
                expression="Subscription.status",
            )
        )
    channel = data.get("channel")
    if isinstance(channel, dict):
        issues += _channel_issues(channel)
    for extension in data.get("extension") or ():
        if not isinstance(extension, dict):
            continue
        secret = extension.get("valueString")
        if extension.get("url") == SECRET_EXTENSION and not (isinstance(secret, str) and secret):
            issues.append(
                Issue(
                    "value",
                    "The subscription-secret extension needs a valueString (the key)",
                    expression="Subscription.extension",
                )
            )
        if extension.get("url") == MAX_ATTEMPTS_EXTENSION:
            attempts = extension.get("valueInteger")
            if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
                issues.append(
                    Issue(
                        "value",
                        "The subscription-max-attempts extension needs a valueInteger >= 1",
                        expression="Subscription.extension",
                    )
                )
    return issues


def _channel_issues(channel: dict[str, Any]) -> list[Issue]:
    channel_type = channel.get("type")
    if channel_type is None:
        return [
            Issue(
                "required",
                "Missing required element 'type'",
                expression="Subscription.channel.type",
            )
        ]
    if channel_type not in CHANNEL_TYPES:
        return [
            Issue(
                "not-supported",
                f"Channel type {channel_type!r} is not supported; this server delivers on "
                f"{' and '.join(CHANNEL_TYPES)}",
                expression="Subscription.channel.type",
            )
        ]
    if channel_type == "websocket":
        return []
    issues = []
    endpoint = channel.get("endpoint")
    parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        issues.append(
            Issue(
                "required" if endpoint is None else "value",
                "A rest-hook subscription needs channel.endpoint, an http(s) URL",
                expression="Subscription.channel.endpoint",
            )
        )
    payload = channel.get("payload")
    if payload is not None and payload.split(";")[0].strip() not in PAYLOADS:
        issues.append(
            Issue(
                "not-supported",
                f"Payload {payload!r} is not supported; use {' or '.join(PAYLOADS)}, or leave it "
                "out for notifications without a body",
                expression="Subscription.channel.payload",
            )
        )
    for n, header in enumerate(channel.get("header") or ()):
        problem = header_problem(header) if isinstance(header, str) else "not a string"
        if problem is not None:
            issues.append(
                Issue(
                    "value",
                    f"A channel header is one line 'Name: value' the server does not set "
                    f"itself: {problem}",
                    expression=f"Subscription.channel.header[{n}]",
                )
            )
    return issues


# What a REST-hook POST carries of the server's own (notifications/resthook.py), and what
# frames the request: a channel.header may set none of them.
SERVER_HEADERS = ("X-Event-Number", "X-Signature", "X-Subscription", "X-Interaction", "X-Resource")
RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        *SERVER_HEADERS,
        "Host",
        "Content-Length",
        "Content-Type",
        "Content-Encoding",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "Upgrade",
        "TE",
        "Trailer",
        "Expect",
        "Proxy-Authorization",
        "Proxy-Connection",
    )
)
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def ended(resource: dict[str, Any], now_ms: int) -> bool:
    """Whether the subscription's `end` has passed: from then on it notifies nothing."""
    end = resource.get("end")
    return isinstance(end, str) and parse_instant_ms(end) <= now_ms


def header_problem(entry: str) -> str | None:
    """Why a `channel.header` entry cannot be sent (None: it can)."""
    name, colon, value = entry.partition(":")
    name = name.strip()
    if not colon or not name or not set(name) <= _TOKEN:
        return f"{entry!r} is not a header line 'Name: value'"
    if name.lower() in RESERVED_HEADERS:
        return f"the header {name} is set by the server"
    if any(c in value for c in "\r\n\0"):
        return f"the value of {name} holds a line break"
    return None


SEARCH_PARAMETERS: tuple[SearchParameter, ...] = (
    SearchParameter(
        "_id", "token", "Subscription.id", "Logical id of the Subscription", "id", ("id",)
    ),
    SearchParameter(
        "_lastUpdated",
        "date",
        "Subscription.meta.lastUpdated",
        "When the Subscription last changed",
        "last_updated",
        ("meta", "lastUpdated"),
    ),
    SearchParameter(
        "status",
        "token",
        "Subscription.status",
        "The current state of the subscription",
        "status",
        ("status",),
        system=STATUS_SYSTEM,
    ),
    SearchParameter(
        "type",
        "token",
        "Subscription.channel.type",
        "The type of channel for the sent notifications",
        "type",
        ("channel", "type"),
        system=CHANNEL_TYPE_SYSTEM,
    ),
    # FHIR's criteria and url are string and uri parameters; here they match the whole value
    # exactly (as a token without a system does).
    SearchParameter(
        "criteria",
        "token",
        "Subscription.criteria",
        "The search rule for the notifications (the whole criteria, exactly)",
        "criteria",
        ("criteria",),
    ),
    SearchParameter(
        "url",
        "token",
        "Subscription.channel.endpoint",
        "The URL notifications are sent to (exactly)",
        "url",
        ("channel", "endpoint"),
    ),
)

SUBSCRIPTION = ResourceKind(
    type=RESOURCE_TYPE,
    description="Subscriptions to changes of AsyncJobs, over WebSocket or REST-hook",
    profile=PROFILE,
    validate=validate_subscription,
    search_parameters=SEARCH_PARAMETERS,
    default_sort=(("last_updated", True),),
    mandatory_elements=MANDATORY_ELEMENTS,
    summary_elements=SUMMARY_ELEMENTS,
    operations=(
        Operation(
            WS_BINDING_TOKEN,
            "r",
            "A short-lived token binding a WebSocket to this subscription "
            "(Medplum's and the R5 backport's $get-ws-binding-token)",
            returns="Parameters",
            methods=("GET", "POST"),
            outputs=(("token", "string"), ("expiration", "dateTime"), ("websocket-url", "url")),
        ),
    ),
)
