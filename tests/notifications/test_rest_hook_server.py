"""REST-hook Subscriptions over a real server process and a local endpoint: the POSTs carry
the job, the channel's headers, an event number and Medplum's signature; a 500 is retried; a
subscription whose endpoint keeps failing goes to status error; after a restart the endpoint
gets what it had not acknowledged; alice's subscription never fires for bob's jobs."""

import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ..conftest import bearer, make_job
from ..servers import running_server
from .receiver import Receiver, receiving

SCOPES = "system/AsyncJob.cruds system/Subscription.cruds"
ALICE = bearer("alice", SCOPES)
BOB = bearer("bob", SCOPES)
SECRET_URL = "https://medplum.com/fhir/StructureDefinition/subscription-secret"
FAST = (
    "--subscription-allow-private-endpoints",
    "true",
    "--subscription-backoff-base",
    "0.1",
    "--subscription-backoff-cap",
    "0.4",
    "--subscription-max-attempts",
    "3",
)


@pytest.fixture
def endpoint():
    with receiving() as receiver:
        yield receiver


def subscribe(base: str, headers: dict[str, str], url: str, **fields: Any) -> dict[str, Any]:
    subscription = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "job updates",
        "criteria": "AsyncJob",
        "channel": {
            "type": "rest-hook",
            "endpoint": url,
            "payload": "application/fhir+json",
            "header": ["Authorization: Bearer receiver-token"],
        },
        "extension": [{"url": SECRET_URL, "valueString": "shared-secret"}],
        **fields,
    }
    answer = httpx.post(f"{base}/Subscription", json=subscription, headers=headers, timeout=10)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    assert created["status"] == "active"
    return created


def create_job(base: str, headers: dict[str, str]) -> dict[str, Any]:
    job = make_job()
    job.pop("id")
    answer = httpx.post(f"{base}/AsyncJob", json=job, headers=headers, timeout=10)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def body_ids(receiver: Receiver) -> list[str]:
    return [orjson.loads(r.body)["id"] for r in receiver.requests]


def wait_for_status(base: str, subscription_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        answer = httpx.get(f"{base}/Subscription/{subscription_id}", headers=ALICE, timeout=10)
        if answer.json().get("status") == status:
            return dict(answer.json())
        time.sleep(0.1)
    raise AssertionError(f"Subscription/{subscription_id} did not become {status}")


def test_the_endpoint_gets_each_job_with_its_headers_and_signature(tmp_path: Path, endpoint):
    with running_server(tmp_path / "data", *FAST) as base:
        subscription = subscribe(base, ALICE, endpoint.url)
        first = create_job(base, ALICE)
        second = create_job(base, ALICE)
        received = endpoint.wait_for(2)
    assert body_ids(endpoint) == [first["id"], second["id"]]
    for number, request in enumerate(received, start=1):
        assert request.path == "/hook"
        assert request.headers["content-type"] == "application/fhir+json"
        assert request.headers["authorization"] == "Bearer receiver-token"
        assert request.headers["x-event-number"] == str(number)
        assert request.headers["x-subscription"] == f"Subscription/{subscription['id']}"
        assert request.headers["x-interaction"] == "create"
        signature = hmac.new(b"shared-secret", request.body, hashlib.sha256).hexdigest()
        assert request.headers["x-signature"] == signature


def test_alices_subscription_never_fires_for_bobs_jobs(tmp_path: Path, endpoint):
    with running_server(tmp_path / "data", *FAST) as base:
        subscribe(base, ALICE, endpoint.url)
        create_job(base, BOB)
        mine = create_job(base, ALICE)
        create_job(base, BOB)
        endpoint.wait_for(1)
        time.sleep(1.5)
    assert body_ids(endpoint) == [mine["id"]]


def test_a_500_is_retried_with_the_same_event_number(tmp_path: Path, endpoint):
    endpoint.status = 500
    with running_server(tmp_path / "data", *FAST[:-1], "10") as base:
        subscribe(base, ALICE, endpoint.url)
        job = create_job(base, ALICE)
        endpoint.wait_for(3)
        endpoint.status = 200
        attempts = len(endpoint.requests)
        endpoint.wait_for(attempts + 1)
        time.sleep(1)
    assert set(body_ids(endpoint)) == {job["id"]}
    assert {r.headers["x-event-number"] for r in endpoint.requests} == {"1"}
    assert len(endpoint.requests) == attempts + 1  # nothing after the acknowledgement


def test_after_three_failures_the_subscription_is_in_error(tmp_path: Path, endpoint):
    endpoint.status = 503
    with running_server(tmp_path / "data", *FAST) as base:
        subscription = subscribe(base, ALICE, endpoint.url)
        create_job(base, ALICE)
        errored = wait_for_status(base, subscription["id"], "error")
        metrics = httpx.get(f"{base.rsplit('/fhir', 1)[0]}/metrics", headers=bearer(), timeout=10)
        time.sleep(1)
    assert len(endpoint.requests) == 3
    assert "503" in errored["error"]
    assert errored["meta"]["versionId"] == "2"
    assert 'fhir_server_notification_failures_total{channel="rest-hook",reason="status"} 3.0' in (
        metrics.text
    )
    assert "fhir_server_rest_hook_errors_total 1.0" in metrics.text


def test_after_a_restart_the_unacknowledged_events_arrive(tmp_path: Path, endpoint):
    data = tmp_path / "data"
    with running_server(data, *FAST[:-1], "20") as base:
        subscribe(base, ALICE, endpoint.url)
        first = create_job(base, ALICE)
        endpoint.wait_for(1)
        endpoint.status = 500
        second = create_job(base, ALICE)
        third = create_job(base, ALICE)
        endpoint.wait_for(2)
    # The server stopped with the second and third unacknowledged.
    endpoint.status = 200
    endpoint.requests.clear()
    with running_server(data, *FAST) as base:
        received = endpoint.wait_for(2)
        time.sleep(1)
    assert body_ids(endpoint) == [second["id"], third["id"]]
    assert [r.headers["x-event-number"] for r in received] == ["2", "3"]
    assert first["id"] not in body_ids(endpoint)


def test_a_channel_header_the_server_sets_is_refused(tmp_path: Path, endpoint):
    with running_server(tmp_path / "data", *FAST) as base:
        subscription = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "x",
            "criteria": "AsyncJob",
            "channel": {
                "type": "rest-hook",
                "endpoint": endpoint.url,
                "header": ["Host: intranet"],
            },
        }
        answer = httpx.post(f"{base}/Subscription", json=subscription, headers=ALICE, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["issue"][0]["expression"] == ["Subscription.channel.header[0]"]
    assert "Host" in answer.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "url",
    ["http://hooks.example.com/x", "https://127.0.0.1/x", "https://[::ffff:10.0.0.1]/x"],
)
def test_without_the_setting_a_plain_http_or_private_endpoint_is_refused_when_written(
    tmp_path: Path, url: str
):
    with running_server(tmp_path / "data") as base:
        subscription = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "x",
            "criteria": "AsyncJob",
            "channel": {"type": "rest-hook", "endpoint": url},
        }
        answer = httpx.post(f"{base}/Subscription", json=subscription, headers=ALICE, timeout=10)
        listed = httpx.get(f"{base}/Subscription", headers=ALICE, timeout=10).json()
    assert answer.status_code == 400
    assert answer.json()["issue"][0]["expression"] == ["Subscription.channel.endpoint"]
    assert listed.get("total", len(listed.get("entry", []))) == 0


def test_a_name_that_resolves_to_loopback_puts_the_subscription_in_error(tmp_path: Path, endpoint):
    """The name passes when written; its address is checked at delivery, and refused."""
    port = endpoint.url.split(":")[2].split("/")[0]
    with running_server(tmp_path / "data", "--subscription-max-attempts", "1") as base:
        subscription = subscribe(base, ALICE, f"https://localhost:{port}/hook")
        create_job(base, ALICE)
        errored = wait_for_status(base, subscription["id"], "error")
    assert endpoint.requests == []
    assert "public addresses" in errored["error"]


def test_with_two_workers_each_job_arrives_once_in_order(tmp_path: Path, endpoint):
    with running_server(tmp_path / "data", *FAST, workers=2) as base:
        subscribe(base, ALICE, endpoint.url)
        jobs = [create_job(base, ALICE) for _ in range(10)]
        endpoint.wait_for(10)
        time.sleep(1.5)
    assert body_ids(endpoint) == [job["id"] for job in jobs]
    assert [r.headers["x-event-number"] for r in endpoint.requests] == [
        str(n) for n in range(1, 11)
    ]
