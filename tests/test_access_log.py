"""JSON access log: one line per request with request id, route template, status, latency."""

import asyncio
import io
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.observability import access_log
from fhir_server.observability.access_log import FLUSH_SECONDS, AccessLog
from fhir_server.storage.base import JobStore

from .conftest import ADMIN_HEADERS, BASE, put_job


class Written:
    """What the app's access log wrote, as parsed JSON lines."""

    def __init__(self, log: AccessLog) -> None:
        self.log = log
        self.stream = io.BytesIO()
        log.stream = self.stream

    def raw(self) -> bytes:
        return self.stream.getvalue()

    def __getitem__(self, index: int) -> dict[str, object]:
        return self.lines()[index]

    def __len__(self) -> int:
        return len(self.lines())

    def lines(self) -> list[dict[str, object]]:
        self.log.flush()
        return [json.loads(line) for line in self.raw().splitlines()]


@pytest.fixture
def app_and_lines(store: JobStore, settings: Settings) -> tuple[object, Written]:
    app = create_app(settings, store=store)
    return app, Written(app.state.access_log)


@pytest.fixture
async def client(app_and_lines: tuple[object, Written]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_and_lines[0])  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE + "/", headers=ADMIN_HEADERS
    ) as http:
        yield http


@pytest.fixture
def access_lines(app_and_lines: tuple[object, Written]) -> Written:
    return app_and_lines[1]


async def test_each_request_writes_one_json_line(
    client: httpx.AsyncClient, store: JobStore, access_lines: Written
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
    client: httpx.AsyncClient, access_lines: Written
):
    response = await client.get("AsyncJob/unknown", headers={"X-Request-ID": "req-42"})
    assert response.headers["x-request-id"] == "req-42"
    assert access_lines[0]["request_id"] == "req-42"
    assert access_lines[0]["status"] == 404


async def test_request_id_is_generated_when_absent(
    client: httpx.AsyncClient, access_lines: Written
):
    response = await client.get("AsyncJob?status=accepted")
    generated = response.headers["x-request-id"]
    assert len(generated) == 32
    assert access_lines[0]["request_id"] == generated


async def test_unsafe_request_id_is_replaced(client: httpx.AsyncClient, access_lines: Written):
    response = await client.get("AsyncJob", headers={"X-Request-ID": 'x" forged\tline'})
    assert response.headers["x-request-id"] != 'x" forged\tline'
    assert access_lines[0]["request_id"] == response.headers["x-request-id"]


async def test_lines_are_written_within_the_flush_interval_without_a_flush_call(
    client: httpx.AsyncClient, access_lines: Written
):
    await client.get("AsyncJob/unknown")
    await client.get("AsyncJob/unknown")
    assert access_lines.raw() == b""  # buffered: one write for both
    await asyncio.sleep(FLUSH_SECONDS * 2)
    written = access_lines.raw().splitlines()
    assert [json.loads(line)["status"] for line in written] == [404, 404]


async def test_shutdown_writes_what_is_buffered(store: JobStore, settings: Settings):
    app = create_app(settings, store=store)
    lines = Written(app.state.access_log)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            await http.get("AsyncJob/unknown", headers=ADMIN_HEADERS)
        assert lines.raw() == b""
    assert json.loads(lines.raw())["status"] == 404


def test_no_access_log_when_it_is_turned_off(store: JobStore):
    app = create_app(Settings(access_log=False), store=store)
    assert app.state.access_log is None


def test_a_flush_pending_on_an_ended_loop_does_not_strand_later_lines():
    stream = io.BytesIO()
    log = AccessLog(stream)

    async def record(request_id: str, then_wait: float) -> None:
        log.record(request_id, "GET", "/r", "/r", 200, 0.001)
        await asyncio.sleep(then_wait)

    asyncio.run(record("first", 0))  # its loop ends before the flush is due
    assert stream.getvalue() == b""
    asyncio.run(record("second", FLUSH_SECONDS * 2))  # a new loop must schedule its own
    ids = [json.loads(line)["request_id"] for line in stream.getvalue().splitlines()]
    assert ids == ["first", "second"]


async def test_one_flush_is_scheduled_for_a_burst_of_lines():
    stream = io.BytesIO()
    log = AccessLog(stream)
    loop = asyncio.get_running_loop()
    scheduled: list[float] = []
    call_later = loop.call_later

    def counting_call_later(delay: float, callback, *args):  # type: ignore[no-untyped-def]
        scheduled.append(delay)
        return call_later(delay, callback, *args)

    loop.call_later = counting_call_later  # type: ignore[method-assign]
    try:
        for n in range(50):
            log.record(f"r{n}", "GET", "/r", "/r", 200, 0.001)
    finally:
        del loop.call_later  # back to the class's method
    assert scheduled == [FLUSH_SECONDS]
    await asyncio.sleep(FLUSH_SECONDS * 2)
    assert len(stream.getvalue().splitlines()) == 50


async def test_a_line_carries_the_time_of_its_request_not_of_its_flush(
    monkeypatch: pytest.MonkeyPatch,
):
    stream = io.BytesIO()
    log = AccessLog(stream)
    with monkeypatch.context() as patched:
        patched.setattr(access_log.time, "time", lambda: 1_700_000_000.25)
        log.record("r1", "GET", "/r", "/r", 200, 0.0015)
    log.flush()
    line = json.loads(stream.getvalue())
    assert line["ts"] == "2023-11-14T22:13:20.250Z"
    assert line["latency_ms"] == 1.5


async def test_a_full_buffer_is_written_at_once():
    stream = io.BytesIO()
    log = AccessLog(stream)
    for n in range(access_log.MAX_BUFFERED_LINES):
        log.record(f"r{n}", "GET", "/r", "/r", 200, 0.001)
    lines = stream.getvalue().splitlines()
    assert len(lines) == access_log.MAX_BUFFERED_LINES  # no flush interval waited for
    assert json.loads(lines[-1])["request_id"] == f"r{access_log.MAX_BUFFERED_LINES - 1}"
