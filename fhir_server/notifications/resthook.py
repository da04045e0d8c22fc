"""One REST-hook notification: the POST a Subscription's `channel` asks for about one version of
a job, and how long to wait before trying it again.

- body: `channel.payload` absent, nothing (R4: "no body"); `application/fhir+json` (or
  `application/json`), the job's version as stored, with that Content-Type. A deletion has no
  resource, so its body is empty whatever the payload.
- headers: each `channel.header` entry (`Name: value`), except names the server sets itself
  or that would change how the request is framed (resources/subscription.py
  RESERVED_HEADERS, refused when the Subscription is written); then the server's own:
  `X-Event-Number` (this subscription's notifications counted from 1: an endpoint de-duplicates
  on it, since a notification may come twice), `X-Subscription`, `X-Interaction`
  (create | update | delete) and `X-Resource` (`AsyncJob/<id>/_history/<version>`); with
  Medplum's subscription-secret extension, `X-Signature`: the HMAC-SHA256 of the exact body
  bytes under the secret, as lowercase hex (what Medplum sends, so its receivers verify ours).
- retries: exponential backoff with jitter (`retry_delay`).
"""

import hashlib
import hmac
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ..resources.subscription import MAX_ATTEMPTS_EXTENSION, SECRET_EXTENSION, header_problem
from ..storage.base import Change

SECRET_EXTENSIONS = (
    SECRET_EXTENSION,
    # The URL Medplum's server reads (with www.), and its first spelling.
    "https://www.medplum.com/fhir/StructureDefinition/subscription-secret",
    "https://www.medplum.com/fhir/StructureDefinition-subscriptionSecret",
)
MAX_ATTEMPTS_LIMIT = 20  # what the extension may ask for at most
JSON_PAYLOADS = ("application/fhir+json", "application/json")
EVENT_HEADER = "X-Event-Number"
SIGNATURE_HEADER = "X-Signature"


@dataclass(frozen=True, slots=True)
class Notification:
    headers: list[tuple[str, str]]
    body: bytes


def channel_headers(subscription: dict[str, Any]) -> list[tuple[str, str]]:
    """The subscription's own headers that may be sent (validation refuses the others)."""
    entries = subscription.get("channel", {}).get("header", [])
    return [
        (name.strip(), value.strip())
        for entry in entries
        if header_problem(entry) is None
        for name, _, value in [entry.partition(":")]
    ]


def secret_of(subscription: dict[str, Any]) -> str | None:
    for extension in subscription.get("extension", []):
        if extension.get("url") in SECRET_EXTENSIONS and extension.get("valueString"):
            return str(extension["valueString"])
    return None


def max_attempts_of(subscription: dict[str, Any], default: int) -> int:
    """Consecutive failures before the subscription is set to error: Medplum's extension when
    present (1 to MAX_ATTEMPTS_LIMIT), else the setting."""
    for extension in subscription.get("extension", []):
        if extension.get("url") == MAX_ATTEMPTS_EXTENSION:
            value = extension.get("valueInteger")
            if isinstance(value, int) and not isinstance(value, bool):
                return max(1, min(value, MAX_ATTEMPTS_LIMIT))
    return default


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def interaction(change: Change) -> str:
    if change.deleted:
        return "delete"
    return "create" if change.version == 1 else "update"


def notification(subscription: dict[str, Any], change: Change, event: int) -> Notification:
    """The POST about `change` (a version of a job), the subscription's `event`-th."""
    payload = subscription.get("channel", {}).get("payload")
    headers = channel_headers(subscription)
    body = b""
    if payload and change.resource is not None:
        body = orjson.dumps(change.resource)
        media_type = payload.split(";")[0].strip()
        headers.append(
            ("Content-Type", media_type if media_type in JSON_PAYLOADS else JSON_PAYLOADS[0])
        )
    headers += [
        (EVENT_HEADER, str(event)),
        ("X-Subscription", f"Subscription/{subscription['id']}"),
        ("X-Interaction", interaction(change)),
        ("X-Resource", f"{change.type}/{change.id}/_history/{change.version}"),
    ]
    if (secret := secret_of(subscription)) is not None:
        headers.append((SIGNATURE_HEADER, sign(secret, body)))
    return Notification(headers, body)


def retry_delay(
    failures: int,
    *,
    base: float,
    cap: float,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds before the next attempt after `failures` consecutive failures: base, 2 base,
    4 base ... up to cap, each drawn between half and all of it, so that endpoints that failed
    together are not all retried at the same moment."""
    ceiling = min(cap, base * 2 ** min(max(failures - 1, 0), 64))
    return uniform(ceiling / 2, ceiling)
