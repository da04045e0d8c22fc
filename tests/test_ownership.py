"""Ownership: a token sees and changes only its own jobs (unless it is an admin); another
owner's job answers exactly like a missing one, on the FHIR API and the eHealth adapter."""

import httpx
import pytest

from fhir_server.auth.ownership import OwnedJobStore
from fhir_server.storage.base import JobStore

from .auth_helpers import HOST, JOB_ID, owned_job
from .conftest import MakeClient, make_job

FHIR_JSON = {"Content-Type": "application/fhir+json"}
EVERYTHING = "system/AsyncJob.cruds job:read composition:read"  # all rights, not admin
MISSING_ID = "00000000-0000-4000-8000-000000000000"
# Reads on both APIs whose answer for another owner's job must equal that for a missing one.
READS = [
    "fhir/R4/AsyncJob/{id}",
    "fhir/R4/AsyncJob/{id}/_history",
    "fhir/R4/AsyncJob/{id}/_history/1",
    "fhir/R4/job/{id}/status",
    "Jobs/{id}",
    "api/jobs/{id}",
    "patients/composition/job/{id}",
    "api/patients/composition/job/{id}",
]
WRITES = [
    ("DELETE", "fhir/R4/AsyncJob/{id}"),
    ("POST", "fhir/R4/AsyncJob/{id}/$cancel"),
    ("DELETE", "fhir/R4/job/{id}/status"),
]
REQUEST_ID = {"X-Request-ID": "same-request-id"}


def url(template: str, job_id: str = JOB_ID) -> str:
    return f"{HOST}/{template.format(id=job_id)}"


def without_ids(response: httpx.Response, job_id: str) -> bytes:
    return response.content.replace(job_id.encode(), b"<id>")


@pytest.mark.parametrize("path", READS)
async def test_owner_reads_its_own_job(make_client: MakeClient, store: JobStore, path: str):
    await owned_job(store, "alice")
    async with make_client(sub="alice", scope=EVERYTHING) as http:
        response = await http.get(url(path))
    assert response.status_code in (200, 202)


@pytest.mark.parametrize("path", READS)
async def test_another_owners_job_answers_exactly_like_a_missing_one(
    make_client: MakeClient, store: JobStore, path: str
):
    await owned_job(store, "alice")
    async with make_client(sub="bob", scope=EVERYTHING) as http:
        hidden = await http.get(url(path), headers=REQUEST_ID)
        missing = await http.get(url(path, MISSING_ID), headers=REQUEST_ID)
    assert hidden.status_code == missing.status_code == 404
    assert without_ids(hidden, JOB_ID) == without_ids(missing, MISSING_ID)


@pytest.mark.parametrize(("method", "path"), WRITES)
async def test_another_owners_job_cannot_be_changed_and_answers_404(
    make_client: MakeClient, store: JobStore, method: str, path: str
):
    await owned_job(store, "alice")
    async with make_client(sub="bob", scope=EVERYTHING) as http:
        response = await http.request(method, url(path))
    assert response.status_code == 404
    assert len(await store.history(JOB_ID)) == 1


async def test_put_on_another_owners_job_is_409_and_changes_nothing(
    make_client: MakeClient, store: JobStore
):
    await owned_job(store, "alice")
    async with make_client(sub="bob", scope=EVERYTHING) as http:
        job = make_job(id=JOB_ID, type="bulk-export")
        response = await http.put(f"AsyncJob/{JOB_ID}", json=job, headers=FHIR_JSON)
    assert response.status_code == 409
    assert response.json()["issue"][0]["code"] == "duplicate"
    stored = await store.get(JOB_ID)
    assert stored is not None and stored.version == 1 and stored.owner == "alice"


async def test_search_returns_only_the_callers_jobs_and_counts_only_them(
    make_client: MakeClient, store: JobStore
):
    await owned_job(store, "alice", id="a-1")
    await owned_job(store, "alice", id="a-2")
    await owned_job(store, "bob", id="b-1")
    async with make_client(sub="bob", scope=EVERYTHING) as http:
        bundle = (await http.get("AsyncJob")).json()
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["b-1"]
    assert bundle["total"] == 1


async def test_count_only_search_counts_only_the_callers_jobs(
    make_client: MakeClient, store: JobStore
):
    await owned_job(store, "alice", id="a-1")
    await owned_job(store, "bob", id="b-1")
    async with make_client(sub="alice", scope=EVERYTHING) as http:
        bundle = (await http.get("AsyncJob", params={"_count": "0"})).json()
    assert bundle["total"] == 1


async def test_search_by_another_owners_id_finds_nothing(make_client: MakeClient, store: JobStore):
    await owned_job(store, "alice", id="a-1")
    async with make_client(sub="bob", scope=EVERYTHING) as http:
        bundle = (await http.post("AsyncJob/_search", data={"_id": "a-1"})).json()
    assert bundle["total"] == 0
    assert [e for e in bundle.get("entry", []) if e["search"]["mode"] == "match"] == []


async def test_admin_sees_every_owners_jobs(make_client: MakeClient, store: JobStore):
    await owned_job(store, "alice", id="a-1")
    await owned_job(store, "bob", id="b-1")
    async with make_client(sub="ops", scope="system/*.*") as http:
        bundle = (await http.get("AsyncJob")).json()
        read = await http.get("AsyncJob/a-1")
    assert bundle["total"] == 2
    assert read.status_code == 200


async def test_admin_scope_is_configurable(store: JobStore, settings: object):
    from fhir_server.app import create_app
    from fhir_server.config import Settings

    from .conftest import TEST_JWT_SECRET, bearer

    await owned_job(store, "alice")
    app = create_app(Settings(jwt_secret=TEST_JWT_SECRET, admin_scope="ops:all"), store=store)
    headers = bearer("ops", "system/AsyncJob.rs ops:all")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), headers=headers) as http:
        assert (await http.get(url(READS[0]))).status_code == 200


async def test_admin_cancels_another_owners_job_and_the_owner_stays(
    make_client: MakeClient, store: JobStore
):
    await owned_job(store, "alice")
    async with make_client(sub="ops", scope="system/*.*") as http:
        response = await http.post(f"AsyncJob/{JOB_ID}/$cancel")
    assert response.status_code == 200
    stored = await store.get(JOB_ID)
    assert stored is not None and stored.owner == "alice"
    assert stored.resource is not None and stored.resource["status"] == "cancelled"


async def test_jobs_without_an_owner_are_seen_by_admins_only(
    make_client: MakeClient, store: JobStore
):
    await owned_job(store, None)
    async with make_client(sub="alice", scope=EVERYTHING) as http:
        assert (await http.get(f"AsyncJob/{JOB_ID}")).status_code == 404
    async with make_client(sub="ops", scope="system/*.*") as http:
        assert (await http.get(f"AsyncJob/{JOB_ID}")).status_code == 200


async def test_job_created_over_http_is_owned_by_the_token_subject(
    make_client: MakeClient, store: JobStore
):
    async with make_client(sub="alice", scope=EVERYTHING) as http:
        created = await http.post("AsyncJob", json=make_job(id=None), headers=FHIR_JSON)
        job_id = created.json()["id"]
        assert (await http.get(f"AsyncJob/{job_id}")).status_code == 200
    stored = await store.get(job_id)
    assert stored is not None and stored.owner == "alice"


async def test_client_id_claim_is_the_owner_when_present(make_client: MakeClient, store: JobStore):
    async with make_client(sub="user-7", scope=EVERYTHING, client_id="mis-42") as http:
        created = await http.post("AsyncJob", json=make_job(id=None), headers=FHIR_JSON)
    stored = await store.get(created.json()["id"])
    assert stored is not None and stored.owner == "client:mis-42"


@pytest.mark.parametrize(
    ("creator", "other"),
    [
        ({"sub": None, "client_id": "bob"}, {"sub": "bob"}),
        ({"sub": "bob"}, {"sub": None, "client_id": "bob"}),
        ({"sub": None, "client_id": "bob"}, {"sub": "client:bob"}),
        ({"sub": "sub:x"}, {"sub": "x"}),
    ],
    ids=["client-then-sub", "sub-then-client", "sub-naming-a-client", "sub-naming-a-sub"],
)
async def test_a_client_and_a_subject_of_the_same_name_own_different_jobs(
    make_client: MakeClient, store: JobStore, creator: dict[str, str], other: dict[str, str]
):
    async with make_client(scope=EVERYTHING, **creator) as http:
        created = await http.post("AsyncJob", json=make_job(id=None), headers=FHIR_JSON)
        job_id = created.json()["id"]
        assert (await http.get(f"AsyncJob/{job_id}")).status_code == 200
    async with make_client(scope=EVERYTHING, **other) as http:
        assert (await http.get(f"AsyncJob/{job_id}")).status_code == 404
        assert (await http.get("AsyncJob")).json()["total"] == 0


async def test_jobs_stored_for_a_subject_stay_its_own(make_client: MakeClient, store: JobStore):
    """Owners written before client ids had their namespace are subjects: unchanged."""
    await owned_job(store, "alice")
    async with make_client(sub="alice", scope=EVERYTHING) as http:
        assert (await http.get(f"AsyncJob/{JOB_ID}")).status_code == 200


async def test_admin_who_writes_a_deleted_job_again_does_not_take_it_over(
    client: httpx.AsyncClient, make_client: MakeClient, store: JobStore
):
    created = await owned_job(store, "bob")
    await store.delete(JOB_ID, expected_version=created.version)
    response = await client.put(f"AsyncJob/{JOB_ID}", json=make_job(id=JOB_ID), headers=FHIR_JSON)
    assert response.status_code == 201
    stored = await store.get(JOB_ID)
    assert stored is not None and stored.owner == "bob" and stored.version == 3
    async with make_client(sub="bob", scope=EVERYTHING) as http:
        assert (await http.get(f"AsyncJob/{JOB_ID}")).status_code == 200


async def test_owner_updates_and_deletes_its_own_job(make_client: MakeClient, store: JobStore):
    await owned_job(store, "alice")
    async with make_client(sub="alice", scope=EVERYTHING) as http:
        job = make_job(id=JOB_ID, status="cancelled")
        assert (
            await http.put(f"AsyncJob/{JOB_ID}", json=job, headers=FHIR_JSON)
        ).status_code == 200
        assert (await http.delete(f"AsyncJob/{JOB_ID}")).status_code == 204


async def test_mongodb_store_has_an_index_for_one_owners_newest_jobs():
    from mongomock_motor import AsyncMongoMockClient

    from fhir_server.storage.mongo import MongoJobStore

    database = AsyncMongoMockClient()["owner_index"]
    await MongoJobStore(database).open()
    indexes = await database["asyncjob"].index_information()
    keys = [tuple(field for field, _ in index["key"]) for index in indexes.values()]
    assert ("owner", "last_updated", "_id") in keys


async def test_an_owners_view_of_the_store_asked_for_another_owner_sees_nothing(store: JobStore):
    await store.save(make_job(id="job-1"), expected_version=0, owner="alice")
    alice = OwnedJobStore(store, "alice")
    assert await alice.get("job-1", owner="alice") == await store.get("job-1")
    assert await alice.get("job-1", owner="bob") is None
    assert await alice.get_version("job-1", 1, owner="bob") is None
    assert await alice.history("job-1", owner="bob") == []
