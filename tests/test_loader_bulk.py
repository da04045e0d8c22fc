"""`fhir-server load` of large files: batches, checked in bulk, all of a file or none of it,
whole batches after a crash, the indexes and tallies made again after a deferred load."""

import asyncio
import contextlib
import gc
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from fhir_server import cli
from fhir_server.config import DEFAULT_LOAD_BATCH_SIZE, Settings
from fhir_server.jobs import loader
from fhir_server.jobs.loader import load_paths
from fhir_server.search.query import HistoryQuery, JobQuery, TokenMatch
from fhir_server.storage import sqlite as sqlite_store
from fhir_server.storage.base import JobStore
from fhir_server.storage.mongo import MongoJobStore
from fhir_server.storage.sqlite import FILE_NAME, SqliteJobStore, search_sql, versions_sql

from .conftest import ADMIN_HEADERS, has_transactions, make_job
from .servers import ROOT, clean_env, running_server

STATUSES = ("accepted", "completed", "error", "cancelled")


def job(n: int) -> dict[str, Any]:
    status = STATUSES[n % 4]
    extra = {} if status == "accepted" else {"transactionTime": "2026-01-02T00:00:00.000Z"}
    minute = f"{n % 60:02d}"
    return make_job(
        id=f"job-{n:06d}",
        status=status,
        type="bulk-export",
        requestTime=f"2026-01-01T00:{minute}:00.000Z",
        **extra,
    )


def write_ndjson(path: Path, jobs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    return path


class Counting:
    """The store, counting the calls of each of its coroutine methods."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return await attr(*args, **kwargs)

        return call


async def test_a_file_with_one_invalid_job_stores_nothing_of_it(store: JobStore, tmp_path: Path):
    jobs = [job(n) for n in range(250)] + [make_job(id="bad", status="running")]
    write_ndjson(tmp_path / "jobs.ndjson", jobs)
    report = await load_paths(store, [tmp_path / "jobs.ndjson"], batch_size=100)
    [error] = report.errors
    assert "jobs.ndjson:251: AsyncJob.status" in error
    assert (report.stored, await store.count(JobQuery())) == (0, 0)


async def test_a_file_of_many_invalid_jobs_names_the_first_hundred_problems(
    store: JobStore, tmp_path: Path
):
    jobs = [make_job(id=f"bad-{n}", status="running") for n in range(150)]
    report = await load_paths(store, [write_ndjson(tmp_path / "jobs.ndjson", jobs)])
    [error] = report.errors
    lines = error.splitlines()
    assert len(lines) == 101 and "jobs.ndjson:100: AsyncJob.status" in lines[99]
    assert lines[100].endswith("jobs.ndjson: and 50 more invalid resources")


async def test_a_file_is_stored_in_batches_checked_in_bulk(store: JobStore, tmp_path: Path):
    path = write_ndjson(tmp_path / "jobs.ndjson", [job(n) for n in range(250)])
    first = Counting(store)
    report = await load_paths(first, [path], batch_size=100)  # type: ignore[arg-type]
    assert (report.stored, report.errors) == (250, [])
    assert await store.count(JobQuery()) == 250
    assert first.calls.get("get", 0) == 0 or not has_transactions(store)
    # Loading it again reads each batch at once and writes nothing.
    again = Counting(store)
    report = await load_paths(again, [path], batch_size=100)  # type: ignore[arg-type]
    assert report.stored == 0
    assert {k: n for k, n in again.calls.items() if k != "defer_upkeep"} == {"get_many": 3}
    assert [r.version for r in await store.history("job-000007")] == [1]


async def test_a_changed_job_in_a_large_file_gets_one_new_version(store: JobStore, tmp_path: Path):
    jobs = [job(n) for n in range(120)]
    await load_paths(store, [write_ndjson(tmp_path / "a.ndjson", jobs)], batch_size=50)
    jobs[70] = {**jobs[70], "status": "cancelled", "transactionTime": "2026-01-03T00:00:00Z"}
    report = await load_paths(store, [write_ndjson(tmp_path / "a.ndjson", jobs)], batch_size=50)
    assert report.stored == 1
    assert [r.version for r in await store.history("job-000070")] == [2, 1]


async def test_a_job_twice_in_a_file_is_stored_in_order(store: JobStore, tmp_path: Path):
    jobs = [job(1), job(2), {**job(1), "status": "cancelled"}, job(3)]
    report = await load_paths(store, [write_ndjson(tmp_path / "a.ndjson", jobs)], batch_size=10)
    assert report.stored == 4
    newest = await store.get("job-000001")
    assert newest is not None and newest.version == 2
    assert newest.resource is not None and newest.resource["status"] == "cancelled"


async def test_without_transactions_jobs_are_stored_one_at_a_time(store: JobStore, tmp_path: Path):
    path = write_ndjson(tmp_path / "jobs.ndjson", [job(n) for n in range(30)])
    report = await load_paths(store, [path], batch_size=10)
    assert report.stored == 30
    # mongomock (like MongoDB without a replica set) has no transactions: the report says so.
    assert report.one_by_one == (not has_transactions(store))
    assert report.one_by_one == isinstance(store, MongoJobStore)


def test_cli_progress_counts_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=120, highlight=False)
    monkeypatch.setattr(cli, "console", terminal)
    write_ndjson(tmp_path / "a.ndjson", [job(n) for n in range(1500)])
    write_ndjson(tmp_path / "b.ndjson", [job(n) for n in range(1500, 1600)])
    settings = Settings(data_dir=tmp_path / "data", load_batch_size=500)
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    assert asyncio.run(cli.load(settings, [tmp_path])) == 0
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())  # without the colours
    assert re.search(r"loading +━+ +1600/1600 jobs +100%", shown), shown
    assert "stored 1600 new or changed jobs from 2 files" in shown
    # The collector's tuning for the load is undone: this process goes on as it was.
    assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, frozen)


def schema(path: Path) -> set[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return set(db.execute("SELECT type, name FROM sqlite_master"))


def tallies_are_counts(path: Path) -> bool:
    with sqlite3.connect(path) as db:
        tally = sorted(db.execute("SELECT status, type, n FROM asyncjob_tally WHERE n > 0"))
        counted = sorted(
            db.execute("SELECT status, type, count(*) FROM asyncjob GROUP BY status, type")
        )
        return bool(tally == counted)


async def fresh_schema(tmp_path: Path) -> set[tuple[str, str]]:
    fresh = SqliteJobStore(tmp_path / "fresh" / FILE_NAME)
    await fresh.open()
    await fresh.close()
    return schema(fresh.path)


async def test_a_large_load_into_an_empty_store_builds_its_indexes_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(sqlite_store, "DEFER_UPKEEP_FROM", 100)
    store = SqliteJobStore(tmp_path / FILE_NAME)
    await store.open()
    deferred: list[bool] = []
    defer = store.defer_upkeep

    async def watched(incoming: int) -> bool:
        deferred.append(await defer(incoming))
        return deferred[-1]

    monkeypatch.setattr(store, "defer_upkeep", watched)
    path = write_ndjson(tmp_path / "jobs.ndjson", [job(n) for n in range(300)])
    assert (await load_paths(store, [path], batch_size=50)).stored == 300
    assert deferred == [True]
    await store.close()
    assert schema(store.path) == await fresh_schema(tmp_path)
    assert tallies_are_counts(store.path)
    reopened = SqliteJobStore(store.path)
    await reopened.open()
    completed = JobQuery(where=((TokenMatch("status", frozenset({"completed"})),),))
    assert await reopened.count(completed) == 75
    assert await reopened.usage("anyone") == (0, 0)
    await reopened.close()


async def test_a_store_left_without_its_upkeep_gets_it_back_on_open(tmp_path: Path):
    """What a load killed mid-way leaves (indexes and tally triggers dropped): the next open
    makes them again and counts the tallies, writes made meanwhile included."""
    store = SqliteJobStore(tmp_path / FILE_NAME)
    await store.open()
    path = write_ndjson(tmp_path / "jobs.ndjson", [job(n) for n in range(40)])
    await load_paths(store, [path])
    assert await store.defer_upkeep(10_000)
    await store.save(make_job(id="meanwhile", status="completed"), expected_version=0, owner="o")
    await store.close()
    assert schema(store.path) != await fresh_schema(tmp_path)
    reopened = SqliteJobStore(store.path)
    await reopened.open()
    meanwhile = await reopened.get("meanwhile")
    assert meanwhile is not None
    assert await reopened.usage("o") == (1, meanwhile.size)
    await reopened.close()
    assert schema(store.path) == await fresh_schema(tmp_path)
    assert tallies_are_counts(store.path)


async def test_a_deferred_load_keeps_the_newest_first_list_and_the_history_indexed(
    tmp_path: Path,
):
    """A server on the same file keeps answering its default search (newest first, all jobs
    or one owner's) and the type history from an index while a load has the others dropped."""
    store = SqliteJobStore(tmp_path / FILE_NAME)
    await store.open()
    assert await store.defer_upkeep(10_000)
    steps: list[str] = []
    with sqlite3.connect(store.path) as db:
        for owner in (None, "alice"):
            sql, params = search_sql(JobQuery(owner=owner))
            steps += [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            history = "SELECT job, version FROM asyncjob_version"
            sql, params = versions_sql(HistoryQuery(owner=owner), history)
            steps += [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    await store.close()
    # A page reads the index in order: no sort of every job, no scan of the table itself.
    unindexed = ("SCAN asyncjob", "SCAN asyncjob_version")
    assert not [s for s in steps if "TEMP B-TREE" in s or s in unindexed], steps
    for index in ("last_updated", "owner_last_updated"):
        assert any(f"ix_asyncjob_{index}" in s for s in steps), steps


async def test_a_load_into_an_empty_store_reads_nothing_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Its store checks each job's version in the write anyway; once a batch meets a stored
    job, each batch after it is read first, and nothing is written twice."""
    monkeypatch.setattr(sqlite_store, "DEFER_UPKEEP_FROM", 100)
    store = SqliteJobStore(tmp_path / FILE_NAME)
    await store.open()
    counting = Counting(store)
    path = write_ndjson(tmp_path / "a.ndjson", [job(n) for n in range(300)])
    report = await load_paths(counting, [path], batch_size=100)  # type: ignore[arg-type]
    assert report.stored == 300
    assert "get_many" not in counting.calls and counting.calls["save_many"] == 3
    # The file again, with 100 more jobs: the first batch meets stored jobs.
    path = write_ndjson(tmp_path / "a.ndjson", [job(n) for n in range(400)])
    again = Counting(store)
    report = await load_paths(again, [path], batch_size=100)  # type: ignore[arg-type]
    assert report.stored == 100
    assert again.calls["get_many"] == 4
    assert [r.version for r in await store.history("job-000007")] == [1]
    assert await store.count(JobQuery()) == 400
    await store.close()


def test_the_load_command_does_not_import_the_server(tmp_path: Path):
    """`fhir-server load` of plain jobs starts in a fraction of the server's import time."""
    path = write_ndjson(tmp_path / "a.ndjson", [job(n) for n in range(10)])
    script = (
        "import sys; from fhir_server.cli import main; "
        f"code = main(['load', {str(path)!r}, '--data-dir', {str(tmp_path / 'data')!r}]); "
        "heavy = ('starlette', 'uvicorn', 'fhir.resources', 'jwt', 'httpx', 'limits'); "
        "print(code, [m for m in heavy if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=clean_env(), cwd=ROOT
    )
    assert done.stdout.split("\n")[-2] == "0 []", done.stdout + done.stderr


def load_command(path: Path, data_dir: Path, batch: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fhir_server.cli",
        "load",
        str(path),
        "--data-dir",
        str(data_dir),
        "--load-batch-size",
        str(batch),
    ]


def live_rows(data_dir: Path) -> int:
    try:
        with sqlite3.connect(f"file:{data_dir / FILE_NAME}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM asyncjob").fetchone()[0])
    except sqlite3.OperationalError:  # not made yet
        return 0


def contents(data_dir: Path) -> list[tuple[str, int, Any]]:
    with sqlite3.connect(data_dir / FILE_NAME) as db:
        rows = db.execute("SELECT id, version, resource FROM asyncjob ORDER BY id").fetchall()
    return [(i, v, {k: x for k, x in json.loads(r).items() if k != "meta"}) for i, v, r in rows]


def test_a_load_killed_mid_way_leaves_whole_batches_and_a_rerun_completes_it(tmp_path: Path):
    total, batch = 40_000, 500
    path = write_ndjson(tmp_path / "jobs.ndjson", [job(n) for n in range(total)])
    data_dir = tmp_path / "data"
    loading = subprocess.Popen(
        load_command(path, data_dir, batch),
        cwd=ROOT,
        env={**clean_env(), "TMPDIR": str(tmp_path)},  # what a SIGKILL leaves stays in there
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while live_rows(data_dir) == 0 and loading.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(loading.pid, signal.SIGKILL)
    loading.wait()
    stored = live_rows(data_dir)
    assert 0 < stored < total, "killed before its first batch or after its last"
    # Whole batches: the first (made by the load's worker process) is a tenth of the others.
    assert (stored - batch // loader.FIRST_BATCH_FRACTION) % batch == 0
    with sqlite3.connect(data_dir / FILE_NAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rerun = subprocess.run(
        load_command(path, data_dir, batch), cwd=ROOT, env=clean_env(), capture_output=True
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"stored {total - stored} new or changed jobs".encode() in rerun.stderr
    clean = tmp_path / "clean"
    subprocess.run(load_command(path, clean, batch), cwd=ROOT, env=clean_env(), check=True)
    assert contents(data_dir) == contents(clean)
    assert schema(data_dir / FILE_NAME) == schema(clean / FILE_NAME)
    assert tallies_are_counts(data_dir / FILE_NAME)


def journal_mode(data_dir: Path) -> str | None:
    try:
        with sqlite3.connect(f"file:{data_dir / FILE_NAME}?mode=ro", uri=True) as db:
            return str(db.execute("PRAGMA journal_mode").fetchone()[0])
    except sqlite3.OperationalError:  # not made yet, or locked for a moment
        return None


def test_two_loads_into_one_data_dir_at_once_store_what_one_after_the_other_would(
    tmp_path: Path,
):
    """Each defers the store's upkeep and makes it again; the second opens the file while
    the first writes through its rollback journal."""
    first = write_ndjson(tmp_path / "first.ndjson", [job(n) for n in range(30_000)])
    second = write_ndjson(tmp_path / "second.ndjson", [job(n) for n in range(30_000, 35_000)])
    data_dir = tmp_path / "data"
    # Batches of the default size: the first load is inside one nearly all the time.
    loading = subprocess.Popen(
        load_command(first, data_dir, DEFAULT_LOAD_BATCH_SIZE),
        cwd=ROOT,
        env=clean_env(),
        stderr=subprocess.PIPE,
    )
    # Watched without a connection of its own, which would keep the load in WAL.
    rollback_journal = data_dir / f"{FILE_NAME}-journal"
    deadline = time.monotonic() + 120
    while not rollback_journal.exists():
        assert loading.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)
    beside = subprocess.run(
        load_command(second, data_dir, 500), cwd=ROOT, env=clean_env(), capture_output=True
    )
    assert beside.returncode == 0, beside.stderr
    assert loading.wait() == 0, loading.stderr.read() if loading.stderr else ""
    clean = tmp_path / "clean"
    for path in (first, second):
        subprocess.run(load_command(path, clean, 500), cwd=ROOT, env=clean_env(), check=True)
    assert contents(data_dir) == contents(clean)
    assert schema(data_dir / FILE_NAME) == schema(clean / FILE_NAME)
    assert tallies_are_counts(data_dir / FILE_NAME)
    assert journal_mode(data_dir) == "wal"


def test_a_load_opening_the_file_mid_batch_of_a_rollback_journal_waits_for_it(tmp_path: Path):
    """A load alone on the file writes through a rollback journal; another process that
    opens the file turns WAL on again. SQLite makes that switch without waiting for a lock:
    opened while a batch was being written, it failed at once with "database is locked"."""
    data_dir = tmp_path / "data"
    path = write_ndjson(tmp_path / "jobs.ndjson", [job(n) for n in range(100)])
    subprocess.run(load_command(path, data_dir, 10), cwd=ROOT, env=clean_env(), check=True)
    more = write_ndjson(tmp_path / "more.ndjson", [job(n) for n in range(100, 200)])
    with contextlib.closing(sqlite3.connect(data_dir / FILE_NAME, isolation_level=None)) as batch:
        assert batch.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
        batch.execute("BEGIN IMMEDIATE")  # a batch being written
        batch.execute("UPDATE asyncjob SET version = version WHERE id = 'job-000000'")
        opening = subprocess.Popen(
            load_command(more, data_dir, 10), cwd=ROOT, env=clean_env(), stderr=subprocess.PIPE
        )
        time.sleep(1.5)  # it starts in well under that
        assert opening.poll() is None  # waiting for the batch
        batch.execute("COMMIT")
    assert opening.wait(timeout=60) == 0, opening.stderr.read() if opening.stderr else ""
    assert live_rows(data_dir) == 200
    assert journal_mode(data_dir) == "wal"


def test_a_large_load_into_a_running_servers_data_dir_keeps_it_answering(tmp_path: Path):
    total = 20_000  # enough for the store to build its indexes after the load
    path = write_ndjson(tmp_path / "jobs.ndjson", [job(n) for n in range(total)])
    data_dir = tmp_path / "data"
    with running_server(data_dir) as base, httpx.Client(headers=ADMIN_HEADERS) as http:
        loading = subprocess.Popen(
            load_command(path, data_dir, 1000),
            cwd=ROOT,
            env=clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        posted, slowest = 0, 0.0
        while loading.poll() is None:
            started = time.monotonic()
            created = http.post(f"{base}/AsyncJob", json=make_job(id=None))
            slowest = max(slowest, time.monotonic() - started)
            assert created.status_code == 201, created.text
            posted += 1
            found = http.get(f"{base}/AsyncJob", params={"status": "accepted", "_count": "5"})
            assert found.status_code == 200, found.text
        assert loading.returncode == 0
        # Writes waited for a batch (or one index build), never for the whole load.
        assert posted > 1 and slowest < 5
        accepted = http.get(f"{base}/AsyncJob", params={"status": "accepted", "_total": "accurate"})
    # The tally counted again at the end: the server's writes during the load count too.
    assert accepted.json()["total"] == total // 4 + posted
