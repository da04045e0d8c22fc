"""Load AsyncJobs from files: a resource, a Bundle, NDJSON, or a folder of those.

A file is read twice and never held in memory whole (an NDJSON file is read a line at a
time). The first pass validates every resource and spools its canonical JSON to temporary
runs sorted by id, a large NDJSON file on every core (jobs/spool.py): a file with any invalid
resource stores nothing. The second stores the spooled jobs, in id order, in batches, each
one save_many (one transaction, one fsync): a job already stored as it is is
not written again, which a batch finds out with one get_many, not a read per job. A crash
(SIGKILL, power) leaves whole batches or nothing, and loading the file again completes it.

Each batch is a transaction of its own, not one for the whole file: another process writing
the same data file (a running server) waits for one batch at most, and readers never wait
(WAL). Into an empty or small SQLite store a large file is loaded without the upkeep of the
search indexes and tallies, which are made again once at the end (DeferredUpkeep).
"""

import itertools
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..config import DEFAULT_LOAD_BATCH_SIZE, DEFAULT_MAX_RESOURCE_BYTES
from ..storage.base import (
    DeferredUpkeep,
    JobRecord,
    JobStore,
    ManyReads,
    PreparedWrites,
    TransactionsUnavailable,
    VersionConflict,
    Write,
)
from .forked import die_with_parent, fork_context
from .reading import SUFFIXES
from .spool import Counter, merged, spool

LOAD_ATTEMPTS = 3
FIRST_BATCH_FRACTION = 10  # of the batch size: the first batch a load's worker makes
STAGED_AHEAD = 2  # batches a load's worker stages before the store has written them


@dataclass
class LoadReport:
    files: int = 0
    stored: int = 0
    errors: list[str] = field(default_factory=list)
    # The store could not write a batch in one transaction (MongoDB without a replica set):
    # its jobs were stored one at a time, each its own write.
    one_by_one: bool = False
    # The store was empty or small (its upkeep deferred) and no batch so far met a job stored
    # already: the next batch is written without reading first.
    all_new: bool = False


def find_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        else:
            files.append(path)
    return files


async def store_jobs(store: JobStore, jobs: list[dict[str, Any]]) -> int:
    """Store each job as a new version, one write each, skipping those already stored as they
    are, so loading the same files again (every `make run`) adds no versions. How many were
    written. (A store without transactions; load_paths writes batches.)"""
    written = 0
    for job in jobs:
        job_id = job.setdefault("id", str(uuid.uuid4()))
        written += await _store_job(store, job_id, job)
    return written


async def _store_job(store: JobStore, job_id: str, job: dict[str, Any]) -> int:
    """1 if written, 0 if already stored as it is. Several workers may load the same files
    at start: a write that lost the race is retried against what the winner stored."""
    for attempt in range(LOAD_ATTEMPTS):
        current = await store.get(job_id)
        if current is not None and current.resource is not None and _same(current.resource, job):
            return 0
        try:
            # Written under the file's id, created or replaced: what a PUT does.
            version = current.version if current else 0
            await store.save(job, expected_version=version, method="PUT")
            return 1
        except VersionConflict:
            if attempt == LOAD_ATTEMPTS - 1:
                raise
    return 0


async def store_batch(store: JobStore, jobs: list[dict[str, Any]], report: LoadReport) -> int:
    """Store the jobs (distinct ids) not stored as they are, in one save_many; how many were
    written. Another writer storing one of them first (several workers loading the same
    files at start) rolls the batch back: it is tried again against what is stored then.

    Into an empty or small store, while every batch so far was new, a batch is first written
    as new jobs without reading anything: the store checks each job's version in the
    transaction anyway, so a job that is there already rolls the batch back (a
    VersionConflict), and from then on each batch is read first (get_many)."""
    if report.one_by_one or not isinstance(store, ManyReads):
        return await store_jobs(store, jobs)
    conflicts = 0
    while True:
        guessed = report.all_new
        if guessed:
            writes = [Write(job["id"], 0, job, method="PUT") for job in jobs]
        else:
            writes = _changed(jobs, await store.get_many([job["id"] for job in jobs]))
        if not writes:
            return 0
        # In id order: each B-tree keyed by id (or by the moment, then id) takes them in order.
        writes.sort(key=lambda write: write.job_id)
        try:
            await store.save_many(writes)
            return len(writes)
        except VersionConflict:
            if guessed:
                report.all_new = False  # read what is stored, then try again
                continue
            conflicts += 1
            if conflicts == LOAD_ATTEMPTS:
                raise
        except TransactionsUnavailable:
            report.one_by_one = True  # nothing was written: each job on its own then
            return await store_jobs(store, jobs)


def _changed(jobs: list[dict[str, Any]], stored: dict[str, JobRecord]) -> list[Write]:
    """A write of each job not stored as it is, over the version stored (0: none)."""
    writes = []
    for job in jobs:
        current = stored.get(job["id"])
        if current is not None and current.resource is not None and _same(current.resource, job):
            continue
        # Written under the file's id, created or replaced: what a PUT does.
        version = current.version if current is not None else 0
        writes.append(Write(job["id"], version, job, method="PUT"))
    return writes


def _same(stored: dict[str, Any], loaded: dict[str, Any]) -> bool:
    """Equal but for meta, which the store owns (versionId, lastUpdated)."""
    return {k: v for k, v in stored.items() if k != "meta"} == {
        k: v for k, v in loaded.items() if k != "meta"
    }


def _batch_lines(
    spooled: Iterable[tuple[bytes, bytes]], size: int, first: int | None = None
) -> Iterator[list[bytes]]:
    """The spooled jobs' JSON, `size` at a time (the first batch `first`, if given); a job
    whose id is already in the batch starts the next one (it is a later version: written
    after the first)."""
    batch: list[bytes] = []
    ids: set[bytes] = set()
    limit = size if first is None else first
    for job_id, line in spooled:
        if len(batch) >= limit or job_id in ids:
            yield batch
            batch, ids, limit = [], set(), size
        batch.append(line)
        ids.add(job_id)
    if batch:
        yield batch


def _batches(spooled: Iterable[tuple[bytes, bytes]], size: int) -> Iterator[list[dict[str, Any]]]:
    for lines in _batch_lines(spooled, size):
        yield [orjson.loads(line) for line in lines]


async def _store_spooled(
    store: JobStore,
    spooled: Iterable[tuple[bytes, bytes]],
    batch_size: int,
    report: LoadReport,
    on_stored: Counter | None,
) -> int:
    """Store the spooled jobs a batch at a time. One at a time, not the next one's rows made
    while the store writes: the writer thread needs the interpreter lock for every row it
    binds, and taking turns with this thread made both slower (measured: 5.3 s against
    5.1 s for 100,000 jobs)."""
    stored = 0
    for batch in _batches(spooled, batch_size):
        stored += await store_batch(store, batch, report)
        if on_stored is not None:
            on_stored(len(batch))
    return stored


async def _store_prepared(
    store: PreparedWrites,
    runs: list[Path],
    batch_size: int,
    workers: int,
    on_stored: Counter | None,
) -> int:
    """Store the spooled jobs as first versions, each batch's rows made and staged by one of
    `workers` forked processes (dealt in turn) while the store writes the batches before: a
    thread could only take turns with the writer, which binds rows holding the interpreter
    lock. How many jobs were stored, in order: fewer than spooled when a batch met a stored
    job (it wrote nothing) or a worker failed; the caller stores the rest the usual way."""
    context = fork_context()
    pipes = [context.Pipe(duplex=False) for _ in range(workers)]
    # A worker stays at most STAGED_AHEAD batches ahead of the store (each one a file).
    ahead = [context.Semaphore(STAGED_AHEAD) for _ in range(workers)]
    processes = [
        context.Process(
            target=_stage_batches,
            args=(os.getpid(), store, runs, batch_size, (i, workers), ahead[i], pipes[i][1]),
            daemon=True,
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    for _, sending in pipes:
        sending.close()
    stored = 0
    try:
        for k in itertools.count():
            # Blocking: the loop has nothing else to do meanwhile (a CLI command).
            staged = pipes[k % workers][0].recv()
            if not isinstance(staged, StagedBatch):
                break  # all stored, or the worker failed
            try:
                stored += await store.save_prepared(staged.rows)
            except VersionConflict:
                break
            ahead[k % workers].release()
            if on_stored is not None:
                on_stored(staged.jobs)
    except EOFError:
        pass  # a worker died: the rest the usual way
    finally:
        for process in processes:
            process.kill()
            process.join()
        for receiving, _ in pipes:
            receiving.close()
    return stored


@dataclass(frozen=True, slots=True)
class StagedBatch:
    jobs: int
    rows: Any


def _stage_batches(
    parent: int,
    store: PreparedWrites,
    runs: list[Path],
    batch_size: int,
    turn: tuple[int, int],
    ahead: Any,
    sending: Any,
) -> None:
    """In a forked process: of every `turn[1]` batches, the rows of the `turn[0]`th, staged
    and sent in order; then None, or a failure's message (the parent stores the rest the
    usual way, where it is reported)."""
    die_with_parent(parent)
    mine, every = turn
    try:
        # A small first batch: the store starts writing sooner.
        first = max(1, batch_size // FIRST_BATCH_FRACTION)
        for k, lines in enumerate(_batch_lines(merged(runs), batch_size, first)):
            if k % every != mine:
                continue
            ahead.acquire()
            jobs = [orjson.loads(line) for line in lines]
            staged = store.prepare_new(jobs, runs[0].parent / f"batch-{k}.sqlite3")
            sending.send(StagedBatch(len(jobs), staged))
        sending.send(None)
    except Exception as exc:
        sending.send(str(exc))


async def load_paths(
    store: JobStore,
    paths: list[Path],
    on_file: Callable[[Path, int], None] | None = None,
    *,
    max_resource_bytes: int = DEFAULT_MAX_RESOURCE_BYTES,
    batch_size: int = DEFAULT_LOAD_BATCH_SIZE,
    on_validated: Counter | None = None,
    on_stored: Counter | None = None,
    workers: int = 1,
) -> LoadReport:
    """Validate, then store, each file (see the module docstring). on_validated and on_stored
    count jobs as they go; on_file is called with each file stored and its jobs written.
    `workers`: processes validating a large NDJSON file (jobs/spool.py)."""
    report = LoadReport()
    deferred = False
    try:
        for path in find_files(paths):
            report.files += 1
            with tempfile.TemporaryDirectory(prefix="fhir-server-load-") as runs:
                try:
                    found = await spool(
                        path,
                        Path(runs),
                        max_resource_bytes=max_resource_bytes,
                        workers=workers,
                        on_validated=on_validated,
                    )
                except ValueError as exc:
                    report.errors.append(str(exc))
                    continue
                if (error := found.error(path)) is not None:
                    report.errors.append(error)
                    continue
                if not deferred and isinstance(store, DeferredUpkeep):
                    deferred = report.all_new = await store.defer_upkeep(found.count)
                stored = 0
                if report.all_new and workers > 1 and isinstance(store, PreparedWrites):
                    stored = await _store_prepared(
                        store, found.runs, batch_size, workers, on_stored
                    )
                    report.all_new = stored == found.count  # else a batch met a stored job
                if stored < found.count:
                    rest = itertools.islice(merged(found.runs), stored, None)
                    stored += await _store_spooled(store, rest, batch_size, report, on_stored)
            report.stored += stored
            if on_file is not None:
                on_file(path, stored)
    finally:
        if deferred:
            assert isinstance(store, DeferredUpkeep)
            await store.restore_upkeep()
    return report
