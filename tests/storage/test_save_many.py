"""save_many: many versions in one database transaction, all or nothing, kept exactly as the
same saves one by one would keep them (live rows, history, the tally behind counts)."""

import pytest

from fhir_server.search.query import JobQuery, TokenMatch
from fhir_server.storage.base import JobStore, TransactionsUnavailable, VersionConflict, Write

from ..conftest import has_transactions, make_job, put_job


def accepted() -> JobQuery:
    return JobQuery(where=((TokenMatch("status", frozenset({"accepted"})),),))


async def test_save_many_stores_every_version_as_single_saves_do(store: JobStore):
    if not has_transactions(store):
        pytest.skip("this deployment has no transactions: see the test below")
    updated = await put_job(store)
    deleted = await put_job(store)
    new = make_job()
    writes = [
        Write(new["id"], 0, new, "alice", "POST"),
        Write(updated.id, 1, make_job(id=updated.id, status="completed"), None, "PUT"),
        Write(deleted.id, 1, None, None, "DELETE"),
    ]
    records = await store.save_many(writes)

    assert [(r.id, r.version, r.method, r.created) for r in records] == [
        (new["id"], 1, "POST", True),
        (updated.id, 2, "PUT", False),
        (deleted.id, 2, "DELETE", False),
    ]
    stored = await store.get(new["id"])
    assert stored is not None and stored.owner == "alice"
    assert stored.resource == records[0].resource
    assert [v.version for v in await store.history(updated.id)] == [2, 1]
    assert (await store.get(deleted.id)).deleted  # type: ignore[union-attr]
    assert await store.count(accepted()) == 1  # the new job: one completed, one deleted
    assert len(await store.search(accepted())) == 1


async def test_one_conflicting_write_stores_nothing(store: JobStore):
    if not has_transactions(store):
        pytest.skip("this deployment has no transactions: see the test below")
    existing = await put_job(store)
    new = make_job()
    writes = [
        Write(new["id"], 0, new, None, "POST"),
        Write(existing.id, 0, make_job(id=existing.id), None, "PUT"),  # it is at version 1
    ]
    with pytest.raises(VersionConflict) as raised:
        await store.save_many(writes)

    assert raised.value.job_id == existing.id
    assert await store.get(new["id"]) is None
    assert [v.version for v in await store.history(existing.id)] == [1]
    assert await store.count(accepted()) == 1


async def test_later_writes_follow_earlier_ones_of_the_same_job(store: JobStore):
    if not has_transactions(store):
        pytest.skip("this deployment has no transactions: see the test below")
    job = make_job()
    records = await store.save_many(
        [
            Write(job["id"], 0, job, None, "PUT"),
            Write(job["id"], 1, {**job, "status": "cancelled"}, None, "PUT"),
        ]
    )
    assert [r.version for r in records] == [1, 2]
    assert (await store.get(job["id"])).resource["status"] == "cancelled"  # type: ignore[union-attr,index]


async def test_a_deployment_without_transactions_refuses_and_writes_nothing(store: JobStore):
    if has_transactions(store):
        pytest.skip("this store runs transactions")
    job = make_job()
    with pytest.raises(TransactionsUnavailable, match="replica set"):
        await store.save_many([Write(job["id"], 0, job, None, "POST")])
    assert await store.get(job["id"]) is None
