"""The change feed every store keeps: a position per version written, deletion or purge, in
the order the writes committed, with what criteria are matched against."""

import asyncio
import json
import time
from pathlib import Path

import pytest

from fhir_server.jobs.loader import load_paths
from fhir_server.storage.base import JobStore, Write

from ..conftest import has_transactions, make_job, put_job


async def test_every_write_is_a_change_in_commit_order(store: JobStore):
    start = await store.feed_position()
    first = await put_job(store, id="a", status="accepted")
    await store.save(
        make_job(id="a", status="completed", transactionTime="2026-01-01T00:01:00.000Z"),
        expected_version=1,
    )
    await put_job(store, id="b")
    await store.delete("a", expected_version=2)

    changes = await store.changes(start, 100)
    assert [(c.id, c.version, c.deleted) for c in changes] == [
        ("a", 1, False),
        ("a", 2, False),
        ("b", 1, False),
        ("a", 3, True),
    ]
    positions = [c.position for c in changes]
    assert positions == sorted(positions) and len(set(positions)) == 4
    assert positions[0] > start
    assert await store.feed_position() == positions[-1]
    assert changes[0].resource == first.resource
    assert changes[1].resource is not None and changes[1].resource["status"] == "completed"
    assert all(c.type == "AsyncJob" for c in changes)
    # A deletion has no body, but criteria see the version it deleted.
    assert changes[3].resource is None
    assert changes[3].matched is not None and changes[3].matched["status"] == "completed"
    # Reading on from a position.
    assert [c.version for c in await store.changes(positions[1], 2)] == [1, 3]
    assert await store.changes(positions[-1], 10) == []


async def test_a_change_names_the_owner(store: JobStore):
    start = await store.feed_position()
    await store.save(make_job(id="owned"), expected_version=0, owner="alice")
    [change] = await store.changes(start, 10)
    assert change.owner == "alice"


async def test_the_purge_is_a_change_and_positions_never_go_back(store: JobStore):
    await put_job(store, id="old", status="completed", transactionTime="2026-01-01T00:00:00Z")
    before = await store.feed_position()
    assert await store.purge(before="2999-01-01T00:00:00Z", statuses=frozenset({"completed"}))
    [purged] = await store.changes(before, 10)
    assert (purged.id, purged.version, purged.purged, purged.deleted) == ("old", 1, True, True)
    assert purged.resource is None and purged.matched is None
    # Everything older than the cutoff is gone from the feed, but positions go on.
    await put_job(store, id="new")
    [new] = await store.changes(purged.position, 10)
    assert new.position > purged.position


async def test_a_transaction_is_one_change_per_write_in_order(store: JobStore):
    if not has_transactions(store):
        pytest.skip("mongomock has no transactions")
    start = await store.feed_position()
    await store.save_many(
        [
            Write("t1", 0, make_job(id="t1"), "alice"),
            Write("t2", 0, make_job(id="t2"), "bob"),
            Write("t1", 1, None),
        ]
    )
    changes = await store.changes(start, 10)
    assert [(c.id, c.version, c.owner, c.deleted) for c in changes] == [
        ("t1", 1, "alice", False),
        ("t2", 1, "bob", False),
        ("t1", 2, "alice", True),
    ]


async def test_loading_files_records_changes(store: JobStore, tmp_path: Path):
    start = await store.feed_position()
    (tmp_path / "jobs.json").write_text(json.dumps(make_job(id="loaded")))
    report = await load_paths(store, [tmp_path])
    assert report.stored == 1
    assert [(c.id, c.version) for c in await store.changes(start, 10)] == [("loaded", 1)]


async def test_a_bulk_save_records_a_change_per_job(store: JobStore, tmp_path: Path):
    # Many new jobs in one file take save_many's bulk path: each is a change all the same.
    start = await store.feed_position()
    ids = [f"bulk-{n}" for n in range(5)]
    lines = "\n".join(json.dumps(make_job(id=job_id)) for job_id in ids)
    (tmp_path / "jobs.ndjson").write_text(lines + "\n")
    report = await load_paths(store, [tmp_path])
    assert report.stored == 5
    changes = await store.changes(start, 10)
    assert sorted((c.id, c.version, c.deleted) for c in changes) == [(i, 1, False) for i in ids]
    assert [c.position for c in changes] == sorted(c.position for c in changes)


async def test_position_before_an_instant_is_where_reading_misses_nothing_after_it(
    store: JobStore,
):
    await store.save(make_job(id="early"), expected_version=0)
    early = await store.feed_position()
    await asyncio.sleep(0.01)
    instant = int(time.time() * 1000)
    await store.save(make_job(id="late"), expected_version=0)
    assert await store.position_before(instant) == early
    assert [c.id for c in await store.changes(await store.position_before(instant), 10)] == ["late"]
    # Nothing written since: the newest position.
    assert await store.position_before(instant + 60_000) == await store.feed_position()
