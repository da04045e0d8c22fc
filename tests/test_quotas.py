"""Per-owner quotas (FHIR_SERVER_MAX_JOBS_PER_OWNER, FHIR_SERVER_MAX_BYTES_PER_OWNER).

One owner stored 297 jobs of 1 MiB in 6 s. With quotas, an owner's own writes beyond its
share are refused (403 forbidden) and store nothing; the counts come from the store, so they
hold across worker processes; admins' writes (the services that run jobs) are not held.
"""

from pathlib import Path

import httpx
import pytest

from fhir_server import JobService
from fhir_server.config import Settings
from fhir_server.search.query import JobQuery
from fhir_server.storage.base import JobStore, Usage
from fhir_server.storage.sqlite import SqliteJobStore

from .conftest import ADMIN_HEADERS, TEST_JWT_SECRET, MakeClient, bearer, make_job
from .servers import running_server

OWNER_SCOPES = "system/AsyncJob.*"
MAX_JOBS = 3


@pytest.fixture
def settings() -> Settings:
    return Settings(
        secret_key="test-secret", jwt_secret=TEST_JWT_SECRET, max_jobs_per_owner=MAX_JOBS
    )


def assert_over_quota(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "forbidden"
    assert "delete jobs to store new ones" in outcome["issue"][0]["diagnostics"]


def note(padding: int) -> dict[str, object]:
    """An output of about `padding` bytes (what a job may carry, and change, at any status)."""
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "note", "valueString": "x" * padding}],
    }


async def owned(store: JobStore, owner: str) -> int:
    return await store.count(JobQuery(owner=owner))


async def test_an_owner_cannot_create_more_jobs_than_its_quota(
    make_client: MakeClient, store: JobStore
):
    async with make_client(sub="alice", scope=OWNER_SCOPES) as alice:
        ids = []
        for _ in range(MAX_JOBS):
            created = await alice.post("AsyncJob", json=make_job(id=None))
            assert created.status_code == 201
            ids.append(created.json()["id"])
        assert_over_quota(await alice.post("AsyncJob", json=make_job(id=None)))
        assert_over_quota(await alice.put("AsyncJob/new-one", json=make_job(id="new-one")))
        assert await owned(store, "alice") == MAX_JOBS
        # Changing a job it has adds none: allowed at the quota.
        changed = await alice.put(f"AsyncJob/{ids[0]}", json=make_job(id=ids[0], type="reindex"))
        assert changed.status_code == 200
        # A deletion makes room.
        assert (await alice.delete(f"AsyncJob/{ids[1]}")).status_code == 204
        assert (await alice.post("AsyncJob", json=make_job(id=None))).status_code == 201
        assert_over_quota(await alice.post("AsyncJob", json=make_job(id=None)))
    async with make_client(sub="bob", scope=OWNER_SCOPES) as bob:
        assert (await bob.post("AsyncJob", json=make_job(id=None))).status_code == 201


async def test_admins_are_not_held_to_the_quota(make_client: MakeClient, store: JobStore):
    async with make_client() as admin:
        for _ in range(MAX_JOBS + 2):
            assert (await admin.post("AsyncJob", json=make_job(id=None))).status_code == 201
    assert await owned(store, "admin") == MAX_JOBS + 2


async def test_the_byte_quota_holds_creates_and_growing_updates(
    store: JobStore, make_client: MakeClient
):
    from fhir_server.app import create_app

    settings = Settings(secret_key="k", jwt_secret=TEST_JWT_SECRET, max_bytes_per_owner=2500)
    app = create_app(settings, store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://testserver/fhir/R4/",
        headers=bearer("alice", OWNER_SCOPES),
    ) as alice:
        one = await alice.post("AsyncJob", json=make_job(id=None, output=note(800)))
        two = await alice.post("AsyncJob", json=make_job(id=None, output=note(800)))
        assert (one.status_code, two.status_code) == (201, 201)
        assert_over_quota(await alice.post("AsyncJob", json=make_job(id=None, output=note(800))))
        job = two.json()
        grown = await alice.put(f"AsyncJob/{job['id']}", json={**job, "output": note(1600)})
        assert_over_quota(grown)
        shrunk = await alice.put(f"AsyncJob/{job['id']}", json={**job, "output": note(1)})
        assert shrunk.status_code == 200
        assert (
            await alice.post("AsyncJob", json=make_job(id=None, output=note(300)))
        ).status_code == 201
    # The service that runs the job may complete it with a result over the owner's quota.
    result = [{"name": "note", "valueString": "y" * 5000}]
    await JobService(store).complete(one.json()["id"], result)
    assert (await store.usage("alice")).bytes > 2500


async def test_usage_follows_creates_updates_deletes_and_purges(store: JobStore):
    assert await store.usage("alice") == Usage(0, 0)
    a = await store.save(make_job(id="a", status="completed"), expected_version=0, owner="alice")
    b = await store.save(make_job(id="b", type="x" * 100), expected_version=0, owner="alice")
    await store.save(make_job(id="c"), expected_version=0, owner="bob")
    sizes = {"a": a.size, "b": b.size}
    assert await store.usage("alice") == Usage(2, sizes["a"] + sizes["b"])
    b2 = await store.save(make_job(id="b"), expected_version=1, owner="alice")
    assert await store.usage("alice") == Usage(2, sizes["a"] + b2.size)
    await store.delete("b", expected_version=2)
    assert await store.usage("alice") == Usage(1, sizes["a"])
    await store.purge(before="2999-01-01T00:00:00.000Z", statuses=frozenset({"completed"}))
    assert await store.usage("alice") == Usage(0, 0)
    assert (await store.usage("bob")).jobs == 1


async def test_a_file_without_the_owner_tally_gets_it_filled_on_open(tmp_path: Path):
    path = tmp_path / "jobs.sqlite3"
    store = SqliteJobStore(path)
    await store.open()
    saved = await store.save(make_job(id="a"), expected_version=0, owner="alice")
    await store.close()
    import sqlite3

    with sqlite3.connect(path) as db:  # as a file of an older fhir-server has it
        for event in ("insert", "delete", "update"):
            db.execute(f"DROP TRIGGER asyncjob_owner_{event}")
        db.execute("DROP TABLE asyncjob_owner")
    store = SqliteJobStore(path)
    await store.open()
    assert await store.usage("alice") == Usage(1, saved.size)
    await store.save(make_job(id="b"), expected_version=0, owner="alice")
    assert (await store.usage("alice")).jobs == 2
    await store.close()


def test_the_quota_holds_across_worker_processes(tmp_path: Path):
    with running_server(tmp_path / "data", "--max-jobs-per-owner", "4", workers=2) as base:
        alice = bearer("alice", OWNER_SCOPES)
        with httpx.Client(timeout=10) as client:
            statuses = []
            for _ in range(10):
                # A new connection each time: the workers take turns.
                answer = httpx.post(f"{base}/AsyncJob", json=make_job(id=None), headers=alice)
                statuses.append(answer.status_code)
            assert statuses.count(201) == 4 and statuses.count(403) == 6
            search = client.get(f"{base}/AsyncJob?_summary=count", headers=alice).json()
            assert search["total"] == 4
            admin = client.post(f"{base}/AsyncJob", json=make_job(id=None), headers=ADMIN_HEADERS)
            assert admin.status_code == 201


async def test_a_kick_off_is_held_to_the_callers_quota(store: JobStore):
    from starlette.requests import Request
    from starlette.responses import Response

    from fhir_server import GuardedRoute, SmartAccess, create_app, kick_off

    async def export(request: Request) -> Response:
        return await kick_off(request, JobService(request.app.state.store), type="bulk-export")

    route = GuardedRoute(
        "/fhir/R4/$export", export, methods=["POST"], access=SmartAccess("AsyncJob", "c")
    )
    settings = Settings(secret_key="k", jwt_secret=TEST_JWT_SECRET, max_jobs_per_owner=1)
    app = create_app(settings, store=store, routes=[route])
    transport = httpx.ASGITransport(app=app)
    headers = {**bearer("alice", OWNER_SCOPES), "Prefer": "respond-async"}
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert (await http.post("/fhir/R4/$export", headers=headers)).status_code == 202
        assert_over_quota(await http.post("/fhir/R4/$export", headers=headers))
    assert await owned(store, "alice") == 1


async def test_a_mongodb_database_stored_without_sizes_gets_them_on_open():
    from mongomock_motor import AsyncMongoMockClient

    from fhir_server.storage.mongo import MongoJobStore

    database = AsyncMongoMockClient()["sizes"]
    store = MongoJobStore(database)
    await store.open()
    saved = await store.save(make_job(id="a"), expected_version=0, owner="alice")
    # As a database of an older fhir-server has it.
    await database["asyncjob"].update_many({}, {"$unset": {"size": ""}})
    assert await store.usage("alice") == Usage(1, 0)
    reopened = MongoJobStore(database)
    await reopened.open()
    assert await reopened.usage("alice") == Usage(1, saved.size)
