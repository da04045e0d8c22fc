"""JSON access log: one line per request with request id, route template, status, latency."""

import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from fhir_server.observability.access_log import ACCESS_LOG
from fhir_server.storage.base import JobStore

from .conftest import put_job


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(record.getMessage()))


@pytest.fixture
def access_lines() -> Iterator[list[dict[str, object]]]:
    handler = Lines()
    ACCESS_LOG.addHandler(handler)
    yield handler.lines
    ACCESS_LOG.removeHandler(handler)


async def test_each_request_writes_one_json_line(
    client: httpx.AsyncClient, store: JobStore, access_lines: list[dict[str, object]]
):
    await put_job(store, id="job-1")
    await client.get("AsyncJob/job-1")
    assert len(access_lines) == 1
    line = access_lines[0]
    assert line["method"] == "GET"
    assert line["route"] == "/fhir/R4/AsyncJob/{id}"
    assert line["path"] == "/fhir/R4/AsyncJob/job-1"
    assert line["status"] == 200
    assert isinstance(line["latency_ms"], float) and line["latency_ms"] > 0
    assert str(line["ts"]).endswith("Z")


async def test_incoming_request_id_is_logged_and_echoed(
    client: httpx.AsyncClient, access_lines: list[dict[str, object]]
):
    response = await client.get("AsyncJob/unknown", headers={"X-Request-ID": "req-42"})
    assert response.headers["x-request-id"] == "req-42"
    assert access_lines[0]["request_id"] == "req-42"
    assert access_lines[0]["status"] == 404


async def test_request_id_is_generated_when_absent(
    client: httpx.AsyncClient, access_lines: list[dict[str, object]]
):
    response = await client.get("AsyncJob?status=accepted")
    generated = response.headers["x-request-id"]
    assert len(generated) == 32
    assert access_lines[0]["request_id"] == generated


async def test_unsafe_request_id_is_replaced(
    client: httpx.AsyncClient, access_lines: list[dict[str, object]]
):
    response = await client.get("AsyncJob", headers={"X-Request-ID": 'x" forged\tline'})
    assert response.headers["x-request-id"] != 'x" forged\tline'
    assert access_lines[0]["request_id"] == response.headers["x-request-id"]
