"""One REST-hook notification: its body per channel.payload, its headers, the signature a
Medplum receiver checks, and the retry schedule."""

import hashlib
import hmac

import orjson
import pytest

from fhir_server.notifications.resthook import (
    max_attempts_of,
    notification,
    retry_delay,
    sign,
)
from fhir_server.resources.subscription import header_problem
from fhir_server.storage.base import Change

JOB = {"resourceType": "AsyncJob", "id": "j1", "status": "accepted", "meta": {"versionId": "2"}}
SECRET = "https://medplum.com/fhir/StructureDefinition/subscription-secret"


def subscription(**channel: object) -> dict:
    return {
        "resourceType": "Subscription",
        "id": "s1",
        "status": "active",
        "criteria": "AsyncJob",
        "channel": {"type": "rest-hook", "endpoint": "https://hooks.example.com", **channel},
    }


def written(version: int = 2) -> Change:
    return Change(5, "AsyncJob", "j1", version, "alice", stored=orjson.dumps(JOB))


def test_without_a_payload_the_body_is_empty():
    note = notification(subscription(), written(), 1)
    assert note.body == b""
    assert "Content-Type" not in dict(note.headers)


def test_with_a_fhir_json_payload_the_body_is_the_job_version():
    note = notification(subscription(payload="application/fhir+json"), written(), 1)
    assert orjson.loads(note.body) == JOB
    assert dict(note.headers)["Content-Type"] == "application/fhir+json"


def test_a_deletion_has_no_body_and_says_what_was_deleted():
    deleted = Change(6, "AsyncJob", "j1", 3, "alice", deleted=True, previous=orjson.dumps(JOB))
    note = notification(subscription(payload="application/fhir+json"), deleted, 4)
    assert note.body == b""
    headers = dict(note.headers)
    assert headers["X-Interaction"] == "delete"
    assert headers["X-Resource"] == "AsyncJob/j1/_history/3"
    assert headers["X-Event-Number"] == "4"


def test_the_server_headers_name_the_event_subscription_and_version():
    headers = dict(notification(subscription(), written(1), 7).headers)
    assert headers["X-Event-Number"] == "7"
    assert headers["X-Subscription"] == "Subscription/s1"
    assert headers["X-Interaction"] == "create"
    assert headers["X-Resource"] == "AsyncJob/j1/_history/1"


def test_channel_headers_are_sent_but_not_ones_that_reframe_the_request():
    channel = subscription(
        header=[
            "Authorization: Bearer abc",
            "X-Trace: a:b:c",
            "Host: intranet",
            "X-Event-Number: 1",
        ]
    )
    headers = notification(channel, written(), 2).headers
    assert ("Authorization", "Bearer abc") in headers
    assert ("X-Trace", "a:b:c") in headers
    assert [v for n, v in headers if n.lower() == "host"] == []
    assert [v for n, v in headers if n == "X-Event-Number"] == ["2"]


@pytest.mark.parametrize(
    "entry",
    [
        "no colon",
        ": no name",
        "Bad Name: x",
        "Content-Length: 0",
        "Transfer-Encoding: chunked",
        "X-Signature: forged",
        "X-A: b\r\nHost: evil",
    ],
)
def test_a_header_entry_that_cannot_be_sent_has_a_reason(entry: str):
    assert header_problem(entry) is not None


def test_the_signature_is_medplums_hmac_sha256_hex_of_the_exact_body():
    resource = subscription(payload="application/fhir+json")
    resource["extension"] = [{"url": SECRET, "valueString": "s3cret"}]
    note = notification(resource, written(), 1)
    expected = hmac.new(b"s3cret", note.body, hashlib.sha256).hexdigest()
    assert dict(note.headers)["X-Signature"] == expected == sign("s3cret", note.body)


def test_an_empty_body_is_signed_too():
    resource = subscription()
    resource["extension"] = [{"url": SECRET, "valueString": "s3cret"}]
    headers = dict(notification(resource, written(), 1).headers)
    assert headers["X-Signature"] == hmac.new(b"s3cret", b"", hashlib.sha256).hexdigest()


def test_without_a_secret_there_is_no_signature():
    assert "X-Signature" not in dict(notification(subscription(), written(), 1).headers)


def test_the_max_attempts_extension_overrides_the_setting_within_bounds():
    url = "https://medplum.com/fhir/StructureDefinition/subscription-max-attempts"
    resource = subscription()
    assert max_attempts_of(resource, 5) == 5
    resource["extension"] = [{"url": url, "valueInteger": 2}]
    assert max_attempts_of(resource, 5) == 2
    resource["extension"] = [{"url": url, "valueInteger": 1000}]
    assert max_attempts_of(resource, 5) == 20


@pytest.mark.parametrize(
    ("failures", "ceiling"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 256.0), (10, 300.0), (60, 300.0)],
)
def test_the_backoff_doubles_up_to_the_cap_drawn_from_its_upper_half(failures, ceiling):
    bounds = []
    retry_delay(failures, base=1.0, cap=300.0, uniform=lambda a, b: bounds.append((a, b)) or b)
    assert bounds == [(ceiling / 2, ceiling)]
    for _ in range(50):
        assert ceiling / 2 <= retry_delay(failures, base=1.0, cap=300.0) <= ceiling
