"""Failing fast: an unreachable or hung database gives 503 transient + Retry-After, and
the same requests succeed again once it returns."""

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.storage.base import JobStore, StoreUnavailable
from fhir_server.storage.mongo import MongoJobStore
from fhir_server.storage.mongo_client import connect

from .conftest import ADMIN_HEADERS, BASE, other_stores_open, put_job
from .faulty_store import FaultyStore

# One request per endpoint family that touches the store.
STORE_ENDPOINTS = [
    "AsyncJob/job-1",
    "AsyncJob?status=accepted&_count=20",
    "AsyncJob/job-1/_history",
    "http://testserver/readyz",
]
UNREACHABLE_URI = "mongodb://127.0.0.1:1/?directConnection=true"


@pytest.fixture
async def faulty(store: JobStore) -> FaultyStore:
    await put_job(store, id="job-1", status="accepted")
    return FaultyStore(store)


async def _client(settings: Settings, store: object | None) -> httpx.AsyncClient:
    app = create_app(settings, store=store)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url=BASE + "/", headers=ADMIN_HEADERS)


@pytest.fixture
async def faulty_client(
    faulty: FaultyStore, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    http = await _client(settings, faulty)
    async with other_stores_open(http._transport.app), http:  # type: ignore[attr-defined]
        yield http


def assert_transient_503(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "transient"
    assert "Traceback" not in response.text


@pytest.mark.parametrize("path", STORE_ENDPOINTS)
async def test_database_down_answers_503_transient_with_retry_after(
    faulty_client: httpx.AsyncClient, faulty: FaultyStore, path: str
):
    faulty.down = True
    assert_transient_503(await faulty_client.get(path))


@pytest.mark.parametrize("path", STORE_ENDPOINTS)
async def test_requests_succeed_again_once_the_database_returns(
    faulty_client: httpx.AsyncClient, faulty: FaultyStore, path: str
):
    faulty.down = True
    assert (await faulty_client.get(path)).status_code == 503
    faulty.clear()
    assert (await faulty_client.get(path)).status_code == 200


async def test_hung_database_call_is_cut_off_at_the_two_second_default(
    faulty_client: httpx.AsyncClient, faulty: FaultyStore
):
    assert Settings().store_timeout == 2.0
    faulty.hang = True
    started = time.monotonic()
    response = await faulty_client.get("AsyncJob/job-1")
    elapsed = time.monotonic() - started
    assert_transient_503(response)
    assert 1.9 <= elapsed < 2.2


async def test_store_timeout_setting_sets_the_deadline(faulty: FaultyStore):
    faulty.hang = True
    async with await _client(Settings(secret_key="k", store_timeout=0.2), faulty) as http:
        started = time.monotonic()
        response = await http.get("AsyncJob?status=accepted")
        assert time.monotonic() - started < 0.5
    assert_transient_503(response)


async def test_slow_but_timely_database_still_answers(
    faulty_client: httpx.AsyncClient, faulty: FaultyStore
):
    faulty.delay = 0.05
    assert (await faulty_client.get("AsyncJob/job-1")).status_code == 200


async def test_unreachable_mongodb_answers_503_within_two_seconds():
    settings = Settings(secret_key="k", mongodb_uri=UNREACHABLE_URI)
    async with await _client(settings, None) as http:
        started = time.monotonic()
        response = await http.get("AsyncJob/job-1")
        elapsed = time.monotonic() - started
    assert_transient_503(response)
    # The 2 s deadline, plus the time to answer (it was measured at 2.004 s on a busy machine).
    assert elapsed <= 2.0 + 0.25


async def test_mongodb_driver_errors_become_store_unavailable():
    settings = Settings(mongodb_uri=UNREACHABLE_URI, mongodb_server_selection_timeout_ms=50)
    store = MongoJobStore(connect(settings)["fhir_server"])
    with pytest.raises(StoreUnavailable, match="ServerSelectionTimeoutError"):
        await store.get("job-1")
    await store.close()


def test_mongodb_client_takes_the_production_settings():
    settings = Settings(
        mongodb_uri=UNREACHABLE_URI,
        mongodb_max_pool_size=7,
        mongodb_server_selection_timeout_ms=900,
        mongodb_connect_timeout_ms=800,
        mongodb_socket_timeout_ms=700,
    )
    client = connect(settings)
    assert client.write_concern.document == {"w": "majority", "j": True}
    assert client.options.retry_writes is True
    assert client.options.pool_options.max_pool_size == 7
    assert client.options.server_selection_timeout == 0.9
    assert client.options.pool_options.connect_timeout == 0.8
    assert client.options.pool_options.socket_timeout == 0.7
    client.close()


def test_numeric_write_concern_is_a_member_count():
    client = connect(Settings(mongodb_uri=UNREACHABLE_URI, mongodb_write_concern="2"))
    assert client.write_concern.document == {"w": 2, "j": True}
    client.close()


async def test_server_starts_while_the_database_is_down_and_opens_it_later(
    faulty: FaultyStore, settings: Settings
):
    faulty.down = True
    app = create_app(settings, store=faulty)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE + "/", headers=ADMIN_HEADERS) as http,
    ):
        assert_transient_503(await http.get("http://testserver/readyz"))
        faulty.clear()
        deadline = time.monotonic() + 3
        while "open" not in faulty.answered:
            assert time.monotonic() < deadline, "the store was not opened after it returned"
            await asyncio.sleep(0.05)
        assert (await http.get("http://testserver/readyz")).status_code == 200
