"""REST-hook delivery in one process, against a local endpoint: every change a subscription
selects arrives once acknowledged, in order, numbered; failures are retried with the same
event number, then set the subscription to error; a new process resumes from the
acknowledged position; two processes never both deliver one subscription."""

import asyncio
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from mongomock_motor import AsyncMongoMockClient

from fhir_server.notifications.delivery import (
    CLOCK_SKEW_MS,
    RestHookDelivery,
    RetryPolicy,
    criteria_of,
)
from fhir_server.notifications.outbound import Sender
from fhir_server.observability.metrics import Metrics
from fhir_server.resources.asyncjob import ASYNC_JOB
from fhir_server.resources.registry import BY_TYPE
from fhir_server.resources.subscription import SUBSCRIPTION
from fhir_server.storage.base import JobStore
from fhir_server.storage.mongo import MongoJobStore
from fhir_server.storage.mongo_deliveries import MongoDeliveryStore
from fhir_server.storage.sqlite import FILE_NAME, SqliteJobStore
from fhir_server.storage.sqlite_deliveries import SqliteDeliveryStore

from ..conftest import make_job
from .receiver import Receiver, receiving

# The mongomock database of a test's stores, by its tmp_path (SQLite: the file in it).
DATABASES: dict[Path, Any] = {}
SECRET_URL = "https://medplum.com/fhir/StructureDefinition/subscription-secret"


@pytest.fixture
def endpoint() -> Iterator[Receiver]:
    with receiving() as receiver:
        yield receiver


@pytest.fixture(params=["sqlite", "mongo"])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[JobStore, JobStore]]:
    jobs: JobStore
    subscriptions: JobStore
    if request.param == "sqlite":
        jobs = SqliteJobStore(tmp_path / "data" / FILE_NAME, ASYNC_JOB)
        subscriptions = SqliteJobStore(tmp_path / "data" / FILE_NAME, SUBSCRIPTION)
    else:
        database = AsyncMongoMockClient()[f"test_{uuid.uuid4().hex}"]
        DATABASES[tmp_path] = database
        jobs = MongoJobStore(database, ASYNC_JOB)
        subscriptions = MongoJobStore(database, SUBSCRIPTION)
    await jobs.open()
    await subscriptions.open()
    yield jobs, subscriptions
    await subscriptions.close()
    await jobs.close()


@asynccontextmanager
async def delivering(
    tmp_path: Path, jobs: JobStore, subscriptions: JobStore, *, max_attempts: int = 3
) -> AsyncIterator[RestHookDelivery]:
    """A delivery loop as a worker process runs it (its own holder id)."""
    delivery = RestHookDelivery(
        jobs=jobs,
        subscriptions=subscriptions,
        states=(
            MongoDeliveryStore(DATABASES[tmp_path])
            if tmp_path in DATABASES
            else SqliteDeliveryStore(tmp_path / "data" / FILE_NAME)
        ),
        sender=Sender(timeout=5, response_bytes=100, allow_private=True),
        policy=RetryPolicy(max_attempts, backoff_base=0.05, backoff_cap=0.2),
        criteria=criteria_of(BY_TYPE),
        metrics=Metrics(),
        poll=0.05,
    )
    running = asyncio.create_task(delivery.run())
    try:
        yield delivery
    finally:
        await delivery.stop()
        await running
        await delivery.close()


async def subscribe(
    subscriptions: JobStore, url: str, owner: str | None, **fields: Any
) -> dict[str, Any]:
    channel = {"type": "rest-hook", "endpoint": url, "payload": "application/fhir+json"}
    resource = {
        "resourceType": "Subscription",
        "id": str(uuid.uuid4()),
        "status": "active",
        "reason": "test",
        "criteria": "AsyncJob",
        "channel": channel,
        **fields,
    }
    await subscriptions.save(resource, expected_version=0, owner=owner)
    return resource


async def arrived(endpoint: Receiver, count: int) -> list[Any]:
    return await asyncio.to_thread(endpoint.wait_for, count)


async def started(delivery: RestHookDelivery, subscription_id: str) -> None:
    """Wait until the loop has taken the subscription up (its start position is stored)."""
    for _ in range(200):
        if await delivery.states.get(subscription_id) is not None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the subscription was not taken up")


async def write_job(jobs: JobStore, owner: str | None, **fields: Any) -> dict[str, Any]:
    job = make_job(**fields)
    await jobs.save(job, expected_version=0, owner=owner)
    return job


async def test_each_change_arrives_numbered_with_the_job_and_its_signature(
    tmp_path, stores, endpoint
):
    jobs, subscriptions = stores
    secret = [{"url": SECRET_URL, "valueString": "k3y"}]
    sub = await subscribe(
        subscriptions,
        endpoint.url,
        "alice",
        extension=secret,
        channel={
            "type": "rest-hook",
            "endpoint": endpoint.url,
            "payload": "application/fhir+json",
            "header": ["Authorization: Bearer hook-token"],
        },
    )
    async with delivering(tmp_path, jobs, subscriptions) as delivery:
        await started(delivery, sub["id"])
        first = await write_job(jobs, "alice")
        second = await write_job(jobs, "alice", status="in-progress")
        received = await arrived(endpoint, 2)
    assert [orjson.loads(r.body)["id"] for r in received] == [first["id"], second["id"]]
    assert [r.headers["x-event-number"] for r in received] == ["1", "2"]
    for request in received:
        assert request.headers["authorization"] == "Bearer hook-token"
        assert request.headers["content-type"] == "application/fhir+json"
        assert request.headers["x-subscription"] == f"Subscription/{sub['id']}"
        assert request.headers["x-interaction"] == "create"
        expected = hmac.new(b"k3y", request.body, hashlib.sha256).hexdigest()
        assert request.headers["x-signature"] == expected


async def test_alices_subscription_never_fires_for_bobs_jobs(tmp_path, stores, endpoint):
    jobs, subscriptions = stores
    sub = await subscribe(subscriptions, endpoint.url, "alice")
    async with delivering(tmp_path, jobs, subscriptions) as delivery:
        await started(delivery, sub["id"])
        await write_job(jobs, "bob")
        await write_job(jobs, None)  # loaded from a file: admins only
        mine = await write_job(jobs, "alice")
        received = await arrived(endpoint, 1)
        await asyncio.sleep(0.3)
    assert len(endpoint.requests) == 1
    assert orjson.loads(received[0].body)["id"] == mine["id"]
    assert received[0].headers["x-event-number"] == "1"


async def test_criteria_select_the_changes_notified(tmp_path, stores, endpoint):
    jobs, subscriptions = stores
    sub = await subscribe(
        subscriptions, endpoint.url, "alice", criteria="AsyncJob?status=completed"
    )
    async with delivering(tmp_path, jobs, subscriptions) as delivery:
        await started(delivery, sub["id"])
        job = await write_job(jobs, "alice")
        await jobs.save(
            {**job, "status": "completed", "transactionTime": "2026-01-01T00:01:00Z"},
            expected_version=1,
            owner="alice",
        )
        received = await arrived(endpoint, 1)
        await asyncio.sleep(0.3)
    assert len(endpoint.requests) == 1
    assert received[0].headers["x-resource"] == f"AsyncJob/{job['id']}/_history/2"
    assert received[0].headers["x-interaction"] == "update"


async def test_a_failed_notification_is_retried_with_the_same_event_number(
    tmp_path, stores, endpoint
):
    jobs, subscriptions = stores
    endpoint.status = 500
    sub = await subscribe(subscriptions, endpoint.url, "alice")
    async with delivering(tmp_path, jobs, subscriptions, max_attempts=10) as delivery:
        await started(delivery, sub["id"])
        await write_job(jobs, "alice")
        await arrived(endpoint, 2)
        endpoint.status = 200
        before = len(endpoint.requests)
        await arrived(endpoint, before + 1)
        await asyncio.sleep(0.3)
        retries = delivery.metrics.delivery_retries.labels("rest-hook")._value.get()  # type: ignore[union-attr]
        state = await delivery.states.get(sub["id"])
    assert {r.headers["x-event-number"] for r in endpoint.requests} == {"1"}
    assert retries >= 2
    assert state is not None and (state.events, state.failures) == (1, 0)


async def test_after_max_attempts_the_subscription_is_in_error_saying_why(
    tmp_path, stores, endpoint
):
    jobs, subscriptions = stores
    endpoint.status = 503
    sub = await subscribe(subscriptions, endpoint.url, "alice")
    async with delivering(tmp_path, jobs, subscriptions, max_attempts=3) as delivery:
        await started(delivery, sub["id"])
        await write_job(jobs, "alice")
        await arrived(endpoint, 3)
        for _ in range(100):
            record = await subscriptions.get(sub["id"])
            if record is not None and record.resource["status"] == "error":
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
    assert len(endpoint.requests) == 3
    assert record is not None and record.resource is not None
    assert record.resource["status"] == "error"
    assert "3 attempts failed" in record.resource["error"]
    assert "503" in record.resource["error"]
    assert record.owner == "alice"
    assert record.version == 2


async def test_a_new_process_delivers_what_was_not_acknowledged(tmp_path, stores, endpoint):
    jobs, subscriptions = stores
    sub = await subscribe(subscriptions, endpoint.url, "alice")
    async with delivering(tmp_path, jobs, subscriptions, max_attempts=20) as delivery:
        await started(delivery, sub["id"])
        first = await write_job(jobs, "alice")
        await arrived(endpoint, 1)
        endpoint.status = 500
        second = await write_job(jobs, "alice")
        third = await write_job(jobs, "alice")
        await arrived(endpoint, 2)
    # Stopped: the second and third were never acknowledged.
    endpoint.status = 200
    endpoint.requests.clear()
    async with delivering(tmp_path, jobs, subscriptions) as again:
        assert again.holder != delivery.holder
        received = await arrived(endpoint, 2)
        await asyncio.sleep(0.3)
    assert [orjson.loads(r.body)["id"] for r in received] == [second["id"], third["id"]]
    assert [r.headers["x-event-number"] for r in received] == ["2", "3"]
    assert first["id"] not in {orjson.loads(r.body)["id"] for r in endpoint.requests}


async def test_two_processes_deliver_each_change_once(tmp_path, stores, endpoint):
    jobs, subscriptions = stores
    sub = await subscribe(subscriptions, endpoint.url, "alice")
    async with (
        delivering(tmp_path, jobs, subscriptions) as one,
        delivering(tmp_path, jobs, subscriptions),
    ):
        await started(one, sub["id"])
        written = [await write_job(jobs, "alice") for _ in range(10)]
        await arrived(endpoint, 10)
        await asyncio.sleep(0.5)
    assert [orjson.loads(r.body)["id"] for r in endpoint.requests] == [j["id"] for j in written]


async def test_an_inactive_subscription_is_not_delivered(tmp_path, stores, endpoint):
    jobs, subscriptions = stores
    await subscribe(subscriptions, endpoint.url, "alice", status="off")
    async with delivering(tmp_path, jobs, subscriptions):
        await write_job(jobs, "alice")
        await asyncio.sleep(0.5)
    assert endpoint.requests == []


async def test_a_private_endpoint_without_the_setting_is_a_failure(tmp_path, stores, endpoint):
    jobs, subscriptions = stores
    sub = await subscribe(subscriptions, endpoint.url, "alice")
    async with delivering(tmp_path, jobs, subscriptions, max_attempts=1) as delivery:
        delivery.sender.allow_private = False
        await started(delivery, sub["id"])
        await write_job(jobs, "alice")
        for _ in range(100):
            record = await subscriptions.get(sub["id"])
            if record is not None and record.resource["status"] == "error":
                break
            await asyncio.sleep(0.05)
    assert endpoint.requests == []
    assert record is not None and record.resource is not None
    assert "https" in record.resource["error"]


async def test_a_change_written_right_after_the_subscription_is_notified(
    tmp_path, stores, endpoint
):
    jobs, subscriptions = stores
    async with delivering(tmp_path, jobs, subscriptions):
        await asyncio.sleep(0.2)  # the loop has listed the subscriptions (none)
        await subscribe(subscriptions, endpoint.url, "alice")
        job = await write_job(jobs, "alice")  # before the loop could see the subscription
        received = await arrived(endpoint, 1)
        await asyncio.sleep(0.3)
    assert [orjson.loads(r.body)["id"] for r in endpoint.requests] == [job["id"]]
    assert received[0].headers["x-event-number"] == "1"


async def test_a_process_that_lists_a_subscription_late_misses_nothing_after_it(
    tmp_path, stores, endpoint
):
    # A worker still starting when the subscription and a job were written lists both at its
    # first look: delivery starts where the subscription was written, not where the feed is.
    jobs, subscriptions = stores
    old = await write_job(jobs, "alice")
    await asyncio.sleep((CLOCK_SKEW_MS + 100) / 1000)  # "old" is out of the clock margin
    await subscribe(subscriptions, endpoint.url, "alice")
    job = await write_job(jobs, "alice")
    async with delivering(tmp_path, jobs, subscriptions):  # its first listing has both
        received = await arrived(endpoint, 1)
        await asyncio.sleep(0.3)
    assert [orjson.loads(r.body)["id"] for r in endpoint.requests] == [job["id"]]
    assert old["id"] != job["id"]
    assert received[0].headers["x-event-number"] == "1"


async def test_a_deleted_subscriptions_position_is_forgotten(tmp_path, stores, endpoint):
    jobs, subscriptions = stores
    sub = await subscribe(subscriptions, endpoint.url, "alice")
    async with delivering(tmp_path, jobs, subscriptions) as delivery:
        await started(delivery, sub["id"])
        await write_job(jobs, "alice")
        await arrived(endpoint, 1)
        await subscriptions.delete(sub["id"], expected_version=1)
        for _ in range(100):
            if await delivery.states.get(sub["id"]) is None:
                break
            await asyncio.sleep(0.05)
        state = await delivery.states.get(sub["id"])
    assert state is None


async def test_the_error_does_not_tell_the_owner_which_private_address_a_name_has(
    tmp_path, stores, endpoint
):
    """Whether an internal name resolves, and to what, is the operator's business."""
    jobs, subscriptions = stores

    async def internal(host: str, port: int) -> list[Any]:
        return [(2, 1, 6, "", ("10.20.30.40", port))]

    sub = await subscribe(subscriptions, "https://db.internal.example/x", "alice")
    async with delivering(tmp_path, jobs, subscriptions, max_attempts=1) as delivery:
        await delivery.sender.close()
        delivery.sender = Sender(
            timeout=5, response_bytes=100, allow_private=False, resolver=internal
        )
        await started(delivery, sub["id"])
        await write_job(jobs, "alice")
        for _ in range(100):
            record = await subscriptions.get(sub["id"])
            if record is not None and record.resource["status"] == "error":
                break
            await asyncio.sleep(0.05)
    assert record is not None and record.resource is not None
    assert record.resource["status"] == "error"
    assert "public addresses" in record.resource["error"]
    assert "10.20.30.40" not in record.resource["error"]
