"""Versioned writes, reads and history, on every backend."""

import pytest

from fhir_server.storage.base import JobStore, VersionConflict

from ..conftest import make_job, put_job


async def test_get_returns_the_newest_version(store: JobStore):
    await put_job(store, id="job-1", status="accepted")
    await put_job(store, id="job-1", status="completed")
    record = await store.get("job-1")
    assert record is not None
    assert record.version == 2
    assert record.resource is not None
    assert record.resource["status"] == "completed"


async def test_get_of_an_id_never_used_is_none(store: JobStore):
    assert await store.get("never") is None


async def test_save_stamps_version_and_last_updated_into_meta(store: JobStore):
    record = await put_job(store, id="job-1")
    stored = await store.get("job-1")
    assert stored is not None and stored.resource is not None
    assert stored.resource["meta"] == {"versionId": "1", "lastUpdated": record.last_updated}
    assert stored.last_updated == record.last_updated


async def test_save_keeps_the_owner(store: JobStore):
    await store.save(make_job(id="job-1"), expected_version=0, owner="client-a")
    record = await store.get("job-1")
    assert record is not None
    assert record.owner == "client-a"


async def test_get_version_returns_that_version(store: JobStore):
    await put_job(store, id="job-1", status="accepted")
    await put_job(store, id="job-1", status="completed")
    first = await store.get_version("job-1", 1)
    assert first is not None and first.resource is not None
    assert first.resource["status"] == "accepted"
    assert first.resource["meta"]["versionId"] == "1"


async def test_get_version_of_an_unknown_version_is_none(store: JobStore):
    await put_job(store, id="job-1")
    assert await store.get_version("job-1", 2) is None


async def test_history_lists_every_version_newest_first(store: JobStore):
    await put_job(store, id="job-1", status="accepted")
    await put_job(store, id="job-1", status="completed")
    await store.delete("job-1", expected_version=2)
    history = await store.history("job-1")
    assert [r.version for r in history] == [3, 2, 1]
    assert [r.deleted for r in history] == [True, False, False]


async def test_history_of_an_unknown_id_is_empty(store: JobStore):
    assert await store.history("never") == []


async def test_delete_makes_a_tombstone_the_newest_version(store: JobStore):
    await store.save(make_job(id="job-1"), expected_version=0, owner="client-a")
    deleted = await store.delete("job-1", expected_version=1)
    record = await store.get("job-1")
    assert record == deleted
    assert record.version == 2
    assert record.deleted
    assert record.owner == "client-a"


async def test_deleted_version_is_readable_as_a_tombstone(store: JobStore):
    await put_job(store, id="job-1")
    await store.delete("job-1", expected_version=1)
    tombstone = await store.get_version("job-1", 2)
    assert tombstone is not None
    assert tombstone.deleted


async def test_recreate_after_delete_continues_the_versions(store: JobStore):
    await put_job(store, id="job-1", status="accepted")
    await store.delete("job-1", expected_version=1)
    record = await store.save(make_job(id="job-1", status="completed"), expected_version=2)
    assert record.version == 3
    current = await store.get("job-1")
    assert current is not None and current.resource is not None
    assert current.resource["status"] == "completed"


async def test_save_on_a_stale_version_conflicts(store: JobStore):
    await put_job(store, id="job-1")
    await put_job(store, id="job-1")
    with pytest.raises(VersionConflict) as conflict:
        await store.save(make_job(id="job-1"), expected_version=1)
    assert (conflict.value.expected, conflict.value.actual) == (1, 2)


async def test_conflicting_save_changes_nothing(store: JobStore):
    await put_job(store, id="job-1", status="accepted")
    with pytest.raises(VersionConflict):
        await store.save(make_job(id="job-1", status="error"), expected_version=5)
    assert [r.version for r in await store.history("job-1")] == [1]


async def test_create_over_an_existing_job_conflicts(store: JobStore):
    await put_job(store, id="job-1")
    with pytest.raises(VersionConflict) as conflict:
        await store.save(make_job(id="job-1"), expected_version=0)
    assert conflict.value.actual == 1


async def test_update_of_a_job_never_created_conflicts(store: JobStore):
    with pytest.raises(VersionConflict) as conflict:
        await store.save(make_job(id="job-1"), expected_version=3)
    assert conflict.value.actual == 0


async def test_recreate_with_a_version_before_the_tombstone_conflicts(store: JobStore):
    await put_job(store, id="job-1")
    await store.delete("job-1", expected_version=1)
    with pytest.raises(VersionConflict) as conflict:
        await store.save(make_job(id="job-1"), expected_version=1)
    assert conflict.value.actual == 2


async def test_delete_on_a_stale_version_conflicts(store: JobStore):
    await put_job(store, id="job-1")
    await put_job(store, id="job-1")
    with pytest.raises(VersionConflict) as conflict:
        await store.delete("job-1", expected_version=1)
    assert conflict.value.actual == 2


async def test_delete_of_an_unknown_job_conflicts(store: JobStore):
    with pytest.raises(VersionConflict) as conflict:
        await store.delete("never", expected_version=0)
    assert conflict.value.actual is None


async def test_delete_of_a_deleted_job_conflicts(store: JobStore):
    await put_job(store, id="job-1")
    await store.delete("job-1", expected_version=1)
    with pytest.raises(VersionConflict) as conflict:
        await store.delete("job-1", expected_version=2)
    assert conflict.value.actual == 2


# --- reads with an owner: the owner's jobs only, decided by the newest version ---------------


async def test_a_read_with_an_owner_finds_only_that_owners_job(store: JobStore):
    await store.save(make_job(id="job-1", status="accepted"), expected_version=0, owner="alice")
    await store.save(make_job(id="job-1", status="completed"), expected_version=1, owner="alice")
    await store.save(make_job(id="loaded"), expected_version=0)  # no owner: admins only
    mine = await store.get("job-1", owner="alice")
    assert mine is not None and mine == await store.get("job-1")
    assert [r.version for r in await store.history("job-1", owner="alice")] == [2, 1]
    first = await store.get_version("job-1", 1, owner="alice")
    assert first is not None and first.resource is not None
    assert first.resource["status"] == "accepted"
    for owner, job_id in (("bob", "job-1"), ("alice", "never"), ("", "loaded")):
        assert await store.get(job_id, owner=owner) is None
        assert await store.get_version(job_id, 1, owner=owner) is None
        assert await store.history(job_id, owner=owner) == []


async def test_a_read_with_an_owner_finds_the_owners_deletion_only(store: JobStore):
    await store.save(make_job(id="job-1"), expected_version=0, owner="alice")
    await store.delete("job-1", expected_version=1)
    deletion = await store.get("job-1", owner="alice")
    assert deletion is not None and deletion.deleted and deletion.version == 2
    assert deletion.owner == "alice"
    assert await store.get("job-1", owner="bob") is None
    assert [r.version for r in await store.history("job-1", owner="alice")] == [2, 1]
    assert await store.history("job-1", owner="bob") == []


async def test_the_newest_versions_owner_decides_for_every_version(store: JobStore):
    """Versions written before an admin's write kept the owner could name another owner
    than the newest: the newest decides, as it does for the live job."""
    await store.save(make_job(id="job-1"), expected_version=0, owner="bob")
    await store.delete("job-1", expected_version=1)
    await store.save(make_job(id="job-1"), expected_version=2, owner="admin")
    assert await store.get("job-1", owner="bob") is None
    assert await store.get_version("job-1", 1, owner="bob") is None
    assert await store.history("job-1", owner="bob") == []
    assert [r.version for r in await store.history("job-1", owner="admin")] == [3, 2, 1]
