"""A load's first pass on every core, spooled in runs sorted by id (jobs/spool.py): a large
NDJSON file is validated in parts by forked processes and stored in id order overall, with
the same result, the same problems at the same line numbers, and the same progress."""

import contextlib
import json
import random
import re
import sqlite3
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from fhir_server.jobs import loader, spool
from fhir_server.jobs.loader import load_paths
from fhir_server.resources.instants import parse_instant_ms
from fhir_server.search.query import JobQuery
from fhir_server.storage import sqlite as sqlite_store
from fhir_server.storage.base import JobStore, Write
from fhir_server.storage.sqlite import FILE_NAME, SqliteJobStore

from .conftest import make_job
from .test_loader_bulk import Counting, job, write_ndjson


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts and runs of a few jobs, so a test file of hundreds has several of each."""
    monkeypatch.setattr(spool, "PART_MIN_BYTES", 4096)
    monkeypatch.setattr(spool, "RUN_JOBS", 40)


async def opened(data_dir: Path) -> SqliteJobStore:
    store = SqliteJobStore(data_dir / FILE_NAME)
    await store.open()
    return store


def shuffled(n: int) -> list[dict[str, Any]]:
    jobs = [job(i) for i in range(n)]
    random.Random(n).shuffle(jobs)
    return jobs


def test_a_large_ndjson_file_is_split_at_line_starts(tmp_path: Path, small_parts: None):
    path = write_ndjson(tmp_path / "a.ndjson", shuffled(300))
    parts = spool._parts(path, 4)
    assert len(parts) == 4
    data = path.read_bytes()
    starts = [start for start, _ in parts]
    assert starts[0] == 0 and all(data[s - 1 : s] == b"\n" for s in starts[1:])
    # Each part ends where the next starts; the last at the end of the file.
    assert [end for _, end in parts] == [*starts[1:], None]
    assert spool._parts(path, 1) == [(0, None)]
    bundle = tmp_path / "a.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "entry": []}) + " " * 20_000)
    assert spool._parts(bundle, 4) == [(0, None)]  # not NDJSON: read whole


async def test_workers_store_what_one_process_stores_in_id_order(tmp_path: Path, small_parts: None):
    path = write_ndjson(tmp_path / "a.ndjson", shuffled(500))
    stores = []
    for workers in (1, 2):
        store = await opened(tmp_path / str(workers))
        saved: list[str] = []
        save_many = store.save_many

        async def recording(writes: Any, save_many: Any = save_many, saved: Any = saved) -> Any:
            saved.extend(w.job_id for w in writes)
            return await save_many(writes)

        store.save_many = recording  # type: ignore[method-assign]
        validated: list[int] = []
        report = await load_paths(
            store,
            [path],
            batch_size=64,
            workers=workers,
            on_validated=validated.append,
        )
        assert report.stored == 500 and not report.errors
        assert sum(validated) == 500
        # One order across the batches: each batch's ids follow the last one's.
        assert saved == sorted(saved) and len(saved) == 500
        stores.append(store)
    one, two = stores
    assert [r.id for r in await one.search(JobQuery(limit=1000))] == [
        r.id for r in await two.search(JobQuery(limit=1000))
    ]
    for store in stores:
        assert await store.count(JobQuery()) == 500
        await store.close()


async def test_a_jobs_versions_keep_the_files_order_across_runs_and_parts(
    tmp_path: Path, small_parts: None
):
    """The same id twice: the later line is the newer version, wherever the two landed."""
    jobs = [j for j in shuffled(300) if j["id"] != "job-000150"]
    first = make_job(id="job-000150", status="accepted")
    last = make_job(id="job-000150", status="cancelled")
    path = write_ndjson(tmp_path / "a.ndjson", [first, *jobs[:10], *jobs[160:], last])
    store = await opened(tmp_path)
    report = await load_paths(store, [path], batch_size=50, workers=2)
    assert not report.errors
    history = await store.history("job-000150")
    assert [(r.version, r.resource["status"]) for r in history] == [  # type: ignore[index]
        (2, "cancelled"),
        (1, "accepted"),
    ]
    await store.close()


async def test_problems_in_a_later_part_name_their_lines_in_the_file(
    store: JobStore, tmp_path: Path, small_parts: None
):
    jobs: list[Any] = shuffled(300)
    jobs[250] = make_job(id="bad-1", status="running")
    jobs[10] = make_job(id="bad-0", status="running")
    path = write_ndjson(tmp_path / "a.ndjson", jobs)
    assert len(spool._parts(path, 2)) == 2
    report = await load_paths(store, [path], workers=2)
    assert report.stored == 0
    [error] = report.errors
    assert re.findall(r"a\.ndjson:(\d+):", error) == ["11", "251"]
    assert await store.count(JobQuery()) == 0


async def test_a_line_that_is_not_json_in_a_later_part_is_named(
    store: JobStore, tmp_path: Path, small_parts: None
):
    path = write_ndjson(tmp_path / "a.ndjson", shuffled(300))
    lines = path.read_text().splitlines()
    lines[270] = "{not json"
    path.write_text("\n".join(lines) + "\n")
    report = await load_paths(store, [path], workers=2)
    assert report.stored == 0
    assert report.errors[0].startswith(f"{path}:271: not valid JSON")


LONG_LINE = 32 << 20  # a line with no break in 32 MiB: a binary file, an array on one line


def with_a_long_line(path: Path, jobs: list[Any], at: int) -> Path:
    """jobs as NDJSON with a line of LONG_LINE bytes of "x" as line `at` (1-based)."""
    lines = [json.dumps(job) + "\n" for job in jobs]
    with path.open("w") as file:
        file.writelines(lines[: at - 1])
        file.write("x" * LONG_LINE + "\n")
        file.writelines(lines[at - 1 :])
    return path


async def test_a_line_over_the_bound_is_a_problem_never_held_in_memory(
    store: JobStore, tmp_path: Path
):
    """It was read whole before anything looked at it (and a blank one skipped unseen)."""
    path = with_a_long_line(tmp_path / "a.ndjson", shuffled(300), at=101)
    tracemalloc.start()
    try:
        report = await load_paths(store, [path], max_resource_bytes=4096, workers=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < LONG_LINE // 8
    [error] = report.errors
    assert re.search(r"a\.ndjson:101: -: the line is \d{8} bytes, over the 16384 read", error)
    assert report.stored == 0 and await store.count(JobQuery()) == 0


async def test_a_split_inside_a_long_line_moves_past_it_by_chunks(
    store: JobStore, tmp_path: Path, small_parts: None
):
    path = with_a_long_line(tmp_path / "a.ndjson", shuffled(300), at=101)
    tracemalloc.start()
    try:
        parts = spool._parts(path, 2)  # the middle of the file is inside the long line
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < LONG_LINE // 8
    data = path.read_bytes()
    assert [start for start, _ in parts] == [0, data.index(b"x\n") + 2]
    report = await load_paths(store, [path], max_resource_bytes=4096, workers=2)
    assert re.findall(r"a\.ndjson:(\d+):", report.errors[0]) == ["101"]
    assert report.stored == 0


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_byte_order_mark_at_the_start_is_ignored(
    store: JobStore, tmp_path: Path, small_parts: None, workers: int
):
    """As RFC 8259 allows, and as files saved by some Windows tools begin; it was "not valid
    JSON" at line 1."""
    jobs = shuffled(300)
    path = tmp_path / "a.ndjson"
    path.write_bytes(b"\xef\xbb\xbf" + write_ndjson(tmp_path / "plain.ndjson", jobs).read_bytes())
    assert len(spool._parts(path, workers)) == workers
    report = await load_paths(store, [path], workers=workers)
    assert report.errors == [] and report.stored == 300
    one = tmp_path / "one.json"
    one.write_bytes(b"\xef\xbb\xbf" + json.dumps(make_job(id="with-a-bom")).encode())
    assert (await load_paths(store, [one])).stored == 1
    assert await store.count(JobQuery()) == 301


async def test_the_problems_of_all_parts_are_capped_together(tmp_path: Path, small_parts: None):
    bad = [make_job(id=f"bad-{n}", status="running") for n in range(300)]
    path = tmp_path / "a.ndjson"
    path.write_text("".join(json.dumps(j) + "\n" for j in bad))
    store = await opened(tmp_path)
    report = await load_paths(store, [path], workers=3)
    [error] = report.errors
    lines = error.splitlines()
    assert len(lines) == spool.MAX_PROBLEMS + 1
    assert lines[-1] == f"{path}: and {300 - spool.MAX_PROBLEMS} more invalid resources"
    await store.close()


@pytest.fixture
def deferred_from_100(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "DEFER_UPKEEP_FROM", 100)


def table(path: Path, sql: str) -> list[Any]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


async def test_rows_made_by_the_worker_are_the_rows_a_usual_load_writes(
    tmp_path: Path, small_parts: None, deferred_from_100: None
):
    """Into an empty store the second pass's rows are made in a forked process while the
    store writes (prepare_new / save_prepared): the same rows as one process writes with
    save_many, but their moment."""
    path = write_ndjson(tmp_path / "a.ndjson", shuffled(500))
    files = []
    for workers in (1, 2):
        store = await opened(tmp_path / str(workers))
        calls = Counting(store)
        report = await load_paths(calls, [path], batch_size=64, workers=workers)  # type: ignore[arg-type]
        assert report.stored == 500 and not report.errors
        assert ("save_prepared" in calls.calls) == (workers == 2)
        await store.close()
        files.append(store.path)
    usual, prepared = files
    for sql in (
        "SELECT id, version, owner, status, type, request_time, transaction_time FROM asyncjob "
        "ORDER BY id",
        "SELECT job, version, owner, method, created FROM asyncjob_version ORDER BY rowid",
        "SELECT position, job, version, owner, deleted, purged FROM asyncjob_change "
        "ORDER BY position",
        "SELECT owner, jobs, bytes FROM asyncjob_owner",
        "SELECT * FROM asyncjob_tally ORDER BY status, type",
    ):
        assert table(prepared, sql) == table(usual, sql), sql
    # The stored JSON differs only in meta.lastUpdated, which is the versions' and the feed's.
    for file in files:
        rows = table(
            file,
            "SELECT l.resource, v.resource, v.last_updated, c.at FROM asyncjob l "
            "JOIN asyncjob_version v ON v.job = l.id "
            "JOIN asyncjob_change c ON c.job = l.id",
        )
        assert len(rows) == 500
        for live, version, last_updated, at in rows:
            assert live == version
            assert json.loads(live)["meta"] == {"versionId": "1", "lastUpdated": last_updated}
            assert at == parse_instant_ms(last_updated)
        assert table(file, "PRAGMA integrity_check") == [("ok",)]


async def test_a_batch_meeting_a_stored_job_goes_the_usual_way_with_the_rest(
    tmp_path: Path, small_parts: None, deferred_from_100: None
):
    store = await opened(tmp_path)
    jobs = shuffled(500)
    stored = sorted(jobs, key=lambda j: j["id"])[300]
    await store.save(stored, expected_version=0, method="PUT")
    calls = Counting(store)
    path = write_ndjson(tmp_path / "a.ndjson", jobs)
    report = await load_paths(calls, [path], batch_size=64, workers=2)  # type: ignore[arg-type]
    # The batches before the one holding it prepared and written; that one rolled back, then
    # read and written the usual way, as the rest.
    first = 64 // loader.FIRST_BATCH_FRACTION
    prepared = 1 + (300 - first) // 64 + 1  # batches written, and the one rolled back
    assert report.stored == 499 and not report.errors
    assert calls.calls["save_prepared"] == prepared and calls.calls["get_many"] >= 1
    assert [r.version for r in await store.history(stored["id"])] == [1]
    assert await store.count(JobQuery()) == 500
    assert table(store.path, "SELECT count(*) FROM asyncjob_version") == [(500,)]
    assert table(store.path, "SELECT count(*) FROM asyncjob_change") == [(500,)]
    await store.close()


async def test_a_worker_that_fails_leaves_the_rest_to_the_usual_way(
    tmp_path: Path, small_parts: None, deferred_from_100: None, monkeypatch: pytest.MonkeyPatch
):
    made: list[int] = []
    prepare_new = SqliteJobStore.prepare_new

    def failing(self: SqliteJobStore, resources: Any, into: Path) -> Any:
        made.append(len(resources))  # in a forked process: the parent's list stays empty
        if len(made) == 2:  # each worker's second batch: batches 2 and 3
            raise RuntimeError("the worker fails")
        return prepare_new(self, resources, into)

    monkeypatch.setattr(SqliteJobStore, "prepare_new", failing)
    store = await opened(tmp_path)
    calls = Counting(store)
    path = write_ndjson(tmp_path / "a.ndjson", shuffled(500))
    report = await load_paths(calls, [path], batch_size=64, workers=2)  # type: ignore[arg-type]
    assert report.stored == 500 and not report.errors and made == []
    rest = 500 - 64 // loader.FIRST_BATCH_FRACTION - 64  # after the two batches prepared
    assert calls.calls["save_prepared"] == 2 and calls.calls["save_many"] == -(-rest // 64)
    assert await store.count(JobQuery()) == 500
    assert table(store.path, "SELECT count(*) FROM asyncjob_version") == [(500,)]
    await store.close()


async def test_index_builds_sort_on_both_cores_then_the_writer_is_as_before(
    tmp_path: Path, deferred_from_100: None
):
    store = await opened(tmp_path)
    writer = store._write_db
    before = [writer.execute(f"PRAGMA {p}").fetchone() for p in ("cache_size", "threads")]
    assert await store.defer_upkeep(200)
    seen: list[Any] = []
    writer.set_trace_callback(lambda sql: seen.append(sql) if "CREATE INDEX" in sql else None)
    await store.save_many([Write(j["id"], 0, j, method="PUT") for j in shuffled(200)])
    await store.restore_upkeep()
    writer.set_trace_callback(None)
    assert len(seen) == 12  # each deferred index built again
    assert [writer.execute(f"PRAGMA {p}").fetchone() for p in ("cache_size", "threads")] == before
    assert before == [(-sqlite_store.WRITER_CACHE_KIB,), (0,)]
    assert table(store.path, "PRAGMA integrity_check") == [("ok",)]
    await store.close()


def journal_mode(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return str(db.execute("PRAGMA journal_mode").fetchone()[0])


async def load_watching_the_journal(tmp_path: Path, store: SqliteJobStore) -> list[str]:
    """Load 500 jobs into store, noting the file's journal mode after each batch written."""
    modes: list[str] = []
    save_prepared = store.save_prepared

    async def watching(staged: Any) -> int:
        written = await save_prepared(staged)
        modes.append(journal_mode(store.path))
        return written

    store.save_prepared = watching  # type: ignore[method-assign]
    path = write_ndjson(tmp_path / "a.ndjson", shuffled(500))
    report = await load_paths(store, [path], batch_size=100, workers=2)
    assert report.stored == 500 and not report.errors
    return modes


async def test_a_load_alone_on_the_file_writes_it_through_a_rollback_journal(
    tmp_path: Path, deferred_from_100: None
):
    """Each page is written once, not to the WAL and then into the file; WAL is back after."""
    store = await opened(tmp_path)
    modes = await load_watching_the_journal(tmp_path, store)
    assert modes and set(modes) == {"delete"}
    assert journal_mode(store.path) == "wal"
    assert await store.count(JobQuery()) == 500  # the reader, reopened, reads
    await store.close()
    assert table(store.path, "PRAGMA integrity_check") == [("ok",)]


async def test_a_load_beside_another_connection_keeps_wal_without_waiting(
    tmp_path: Path, deferred_from_100: None
):
    """Another process on the file (a server) keeps its WAL: the switch is not waited for."""
    store = await opened(tmp_path)
    with contextlib.closing(sqlite3.connect(store.path)) as other:
        other.execute("SELECT count(*) FROM asyncjob").fetchone()
        started = time.monotonic()
        modes = await load_watching_the_journal(tmp_path, store)
        took = time.monotonic() - started
        assert set(modes) == {"wal"}
        assert took < sqlite_store.BUSY_TIMEOUT_MS / 1000 / 2
        assert other.execute("SELECT count(*) FROM asyncjob").fetchone() == (500,)
    await store.close()
