"""The DeliveryStore contract on every backend: a subscription's delivery position survives
the store being closed and opened again, and one holder at a time has its lease."""

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mongomock_motor import AsyncMongoMockClient

from fhir_server.storage.deliveries import DeliveryState, DeliveryStore
from fhir_server.storage.mongo_deliveries import MongoDeliveryStore
from fhir_server.storage.sqlite import FILE_NAME, SqliteJobStore
from fhir_server.storage.sqlite_deliveries import SqliteDeliveryStore

NOW = 1_000_000.0


@pytest.fixture(params=["sqlite", "mongo"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    yield request.param


def open_states(backend: str, tmp_path: Path, database: object) -> DeliveryStore:
    if backend == "sqlite":
        return SqliteDeliveryStore(tmp_path / "data" / FILE_NAME)
    return MongoDeliveryStore(database)


@pytest.fixture
def database() -> object:
    return AsyncMongoMockClient()[f"test_{uuid.uuid4().hex}"]


async def test_a_new_subscription_starts_at_the_given_position(backend, tmp_path, database):
    states = open_states(backend, tmp_path, database)
    state = await states.claim("s1", "w1", now=NOW, lease=30, start=7)
    assert state == DeliveryState("s1", 7, 0, 0, 0.0, "w1", NOW + 30)
    await states.close()


async def test_an_acknowledged_position_survives_reopening(backend, tmp_path, database):
    states = open_states(backend, tmp_path, database)
    state = await states.claim("s1", "w1", now=NOW, lease=30, start=0)
    assert state is not None
    acknowledged = DeliveryState("s1", 12, 3, 0, 0.0, "w1")
    assert await states.record(acknowledged, now=NOW, lease=30)
    await states.release("s1", "w1")
    await states.close()
    again = open_states(backend, tmp_path, database)
    state = await again.claim("s1", "w2", now=NOW + 1, lease=30, start=99)
    assert state == DeliveryState("s1", 12, 3, 0, 0.0, "w2", NOW + 31)
    await again.close()


async def test_a_held_lease_keeps_other_holders_out_until_it_runs_out(backend, tmp_path, database):
    states = open_states(backend, tmp_path, database)
    assert await states.claim("s1", "w1", now=NOW, lease=30, start=0) is not None
    assert await states.claim("s1", "w2", now=NOW + 29, lease=30, start=0) is None
    assert await states.claim("s1", "w1", now=NOW + 29, lease=30, start=0) is not None
    taken = await states.claim("s1", "w2", now=NOW + 60, lease=30, start=0)
    assert taken is not None and taken.holder == "w2"
    # The old holder's writes no longer count.
    assert not await states.record(DeliveryState("s1", 5, 1, holder="w1"), now=NOW + 61, lease=30)
    assert (await states.get("s1")).position == 0  # type: ignore[union-attr]
    await states.close()


async def test_a_released_lease_is_free_at_once(backend, tmp_path, database):
    states = open_states(backend, tmp_path, database)
    await states.claim("s1", "w1", now=NOW, lease=30, start=0)
    await states.release("s1", "w1")
    assert await states.claim("s1", "w2", now=NOW + 1, lease=30, start=0) is not None
    await states.close()


async def test_a_removed_subscription_starts_again(backend, tmp_path, database):
    states = open_states(backend, tmp_path, database)
    await states.claim("s1", "w1", now=NOW, lease=30, start=0)
    await states.record(DeliveryState("s1", 4, 2, holder="w1"), now=NOW, lease=30)
    await states.remove("s1")
    assert await states.get("s1") is None
    state = await states.claim("s1", "w1", now=NOW, lease=30, start=9)
    assert state is not None and (state.position, state.events) == (9, 0)
    await states.close()


async def test_the_sqlite_table_joins_a_file_the_job_store_made(tmp_path):
    jobs = SqliteJobStore(tmp_path / "data" / FILE_NAME)
    await jobs.open()
    states = SqliteDeliveryStore(tmp_path / "data" / FILE_NAME)
    assert await states.claim("s1", "w1", now=NOW, lease=30, start=3) is not None
    await states.close()
    await jobs.close()
    reopened = SqliteJobStore(tmp_path / "data" / FILE_NAME)
    await reopened.open()  # the file's own schema checks accept the extra table
    await reopened.close()
