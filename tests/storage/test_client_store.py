"""The ClientStore contract on every backend: registered clients, and assertion ids (jti) that
count once until they expire; and an older SQLite file gaining the clients' tables, losing
nothing."""

import json
import shutil
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mongomock_motor import AsyncMongoMockClient

from fhir_server.storage.clients import ClientExists, ClientStore, RegisteredClient
from fhir_server.storage.mongo_clients import MongoClientStore
from fhir_server.storage.sqlite import FILE_NAME, SqliteJobStore
from fhir_server.storage.sqlite_clients import SqliteClientStore
from fhir_server.storage.sqlite_schema import SCHEMA_VERSION

UPGRADE = Path(__file__).parent.parent / "data" / "upgrade"
SVC = RegisteredClient("svc", "system/AsyncJob.rs", jwks='{"keys": []}')
WEB = RegisteredClient("web", "system/*.rs job:read", jwks_url="https://web.example/jwks.json")


@pytest.fixture(params=["sqlite", "mongo"])
async def clients(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientStore]:
    if request.param == "sqlite":
        store: ClientStore = SqliteClientStore(tmp_path / "data" / FILE_NAME)
    else:
        store = MongoClientStore(AsyncMongoMockClient()[f"test_{uuid.uuid4().hex}"])
    yield store
    await store.close()


async def test_a_registered_client_is_found_by_its_id(clients: ClientStore):
    await clients.add(WEB)
    await clients.add(SVC)
    found = await clients.get("svc")
    assert found is not None
    assert (found.id, found.scope, found.jwks, found.jwks_url) == ("svc", SVC.scope, SVC.jwks, None)
    assert found.registered.endswith("Z")
    assert [c.id for c in await clients.all()] == ["svc", "web"]
    assert await clients.get("nobody") is None


async def test_an_id_is_registered_once(clients: ClientStore):
    await clients.add(SVC)
    with pytest.raises(ClientExists):
        await clients.add(WEB.__class__("svc", "system/*.*", jwks="{}"))
    found = await clients.get("svc")
    assert found is not None and found.scope == SVC.scope


async def test_a_removed_client_is_gone(clients: ClientStore):
    await clients.add(SVC)
    assert await clients.remove("svc") is True
    assert await clients.remove("svc") is False
    assert await clients.get("svc") is None


async def test_an_assertion_id_counts_once_per_client(clients: ClientStore):
    later = time.time() + 300
    assert await clients.first_use("svc", "jti-1", later) is True
    assert await clients.first_use("svc", "jti-1", later) is False
    assert await clients.first_use("web", "jti-1", later) is True  # another client's


async def test_an_expired_assertion_id_is_pruned(clients: ClientStore):
    assert await clients.first_use("svc", "old", time.time() - 1) is True
    assert await clients.first_use("svc", "new", time.time() + 300) is True
    # Pruned by the last call: the assertion itself is refused as expired long before.
    assert await clients.first_use("svc", "old", time.time() + 300) is True


async def test_the_sqlite_store_keeps_assertion_ids_for_other_processes(tmp_path: Path):
    path = tmp_path / "data" / FILE_NAME
    first, second = SqliteClientStore(path), SqliteClientStore(path)
    assert await first.first_use("svc", "jti-1", time.time() + 300) is True
    assert await second.first_use("svc", "jti-1", time.time() + 300) is False
    await first.close()
    await second.close()


async def test_a_version_2_data_file_opened_by_the_client_store_first_keeps_every_job(
    tmp_path: Path,
):
    """`fhir-server client add` on the data dir of an older release: the file is brought to the
    current schema (every step), and the jobs store then finds every job."""
    path = tmp_path / FILE_NAME
    shutil.copy(UPGRADE / "c448ebd.sqlite3", path)
    expected = json.loads((UPGRADE / "c448ebd-expected.json").read_text())
    clients = SqliteClientStore(path)
    await clients.add(SVC)
    await clients.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
    jobs = SqliteJobStore(path)
    await jobs.open()
    for job_id, history in expected["histories"].items():
        assert [r.version for r in await jobs.history(job_id)] == [v["version"] for v in history]
    await jobs.close()
    reopened = SqliteClientStore(path)
    assert await reopened.get("svc") is not None
    await reopened.close()
