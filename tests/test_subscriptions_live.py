"""Subscriptions over a real server process, with @medplum/core's own client
(subscribeToCriteria): notifications of jobs completed through the REST API, through a
JobService in another process, and across two workers; never of another owner's jobs."""

import asyncio
import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from fhir_server.jobs.service import JobService
from fhir_server.storage.sqlite import FILE_NAME, SqliteJobStore

from .conftest import bearer, make_job, token
from .node_clients import NODE_DIR
from .servers import running_server

SCOPES = "system/AsyncJob.cruds system/Subscription.cruds"


class NodeSubscriber:
    """tests/node/subscribe.mjs as a running process, its events read line by line."""

    def __init__(self, process: "subprocess.Popen[str]") -> None:
        self.process = process
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip():
                self.events.put(json.loads(line))

    def next(self, kind: str, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {kind} event within {timeout} s"
            event = self.events.get(timeout=left)
            if event["event"] == kind:
                return event

    def nothing_more(self, seconds: float) -> list[dict[str, Any]]:
        time.sleep(seconds)
        seen = []
        while not self.events.empty():
            event = self.events.get()
            if event["event"] == "message":
                seen.append(event)
        return seen


@contextmanager
def subscriber(root: str, access_token: str, criteria: str) -> Iterator[NodeSubscriber]:
    process = subprocess.Popen(
        ["node", "--experimental-websocket", str(NODE_DIR / "subscribe.mjs")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=NODE_DIR,
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps({"baseUrl": root, "token": access_token, "criteria": criteria}))
    process.stdin.write("\n")
    process.stdin.flush()
    try:
        yield NodeSubscriber(process)
    finally:
        process.kill()
        process.wait()


def complete_over_rest(base: str, headers: dict[str, str], job_id: str) -> None:
    job = make_job(id=job_id)
    assert httpx.put(f"{base}/AsyncJob/{job_id}", json=job, headers=headers).status_code == 201
    done = {**job, "status": "completed", "transactionTime": "2026-01-01T00:01:00.000Z"}
    assert httpx.put(f"{base}/AsyncJob/{job_id}", json=done, headers=headers).status_code == 200


def notified(event: dict[str, Any]) -> tuple[str, str, str]:
    status, entry = event["bundle"]["entry"]
    assert status["resource"]["resourceType"] == "SubscriptionStatus"
    assert status["resource"]["type"] == "event-notification"
    resource = entry["resource"]
    return resource["id"], resource["status"], resource["meta"]["versionId"]


def test_medplum_subscribe_to_criteria_over_rest_jobservice_and_two_workers(tmp_path: Path):
    data_dir = tmp_path / "data"
    alice = bearer("alice", SCOPES)
    bob = bearer("bob", SCOPES)
    with running_server(data_dir, workers=2) as base:
        root = base.removesuffix("fhir/R4")
        with subscriber(root, token("alice", SCOPES), "AsyncJob?status=completed") as client:
            connected = client.next("connect")
            subscriptions = httpx.get(f"{base}/Subscription", headers=alice).json()
            [entry] = subscriptions["entry"]
            assert entry["resource"]["id"] == connected["subscriptionId"]
            assert entry["resource"]["channel"] == {"type": "websocket"}

            # Bob's job first: were it notified, it would come before alice's.
            complete_over_rest(base, bob, "bobs-job")
            complete_over_rest(base, alice, "alices-rest-job")
            assert notified(client.next("message")) == ("alices-rest-job", "completed", "2")

            # A producer in another process (this one) writing to the same store.
            complete_over_rest(base, alice, "warm-up")  # the other worker, most likely
            assert notified(client.next("message"))[0] == "warm-up"
            httpx.put(f"{base}/AsyncJob/by-service", json=make_job(id="by-service"), headers=alice)

            async def produce() -> None:
                store = SqliteJobStore(data_dir / FILE_NAME)
                await store.open()
                try:
                    await JobService(store).complete("by-service")
                finally:
                    await store.close()

            asyncio.run(produce())
            assert notified(client.next("message")) == ("by-service", "completed", "2")
            # Several writes, answered by either worker, each notified once.
            for n in range(6):
                complete_over_rest(base, alice, f"many-{n}")
            ids = [notified(client.next("message"))[0] for _ in range(6)]
            assert ids == [f"many-{n}" for n in range(6)]
            assert client.nothing_more(0.5) == []
