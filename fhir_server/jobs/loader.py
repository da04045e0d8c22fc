"""Load AsyncJobs from files: a resource, a Bundle, NDJSON, or a folder of those.

A file is read twice and never held in memory whole (an NDJSON file is read a line at a
time). The first pass validates every resource and spools its canonical JSON to a temporary
file: a file with any invalid resource stores nothing. The second stores the spooled jobs in
batches, each one save_many (one transaction, one fsync): a job already stored as it is is
not written again, which a batch finds out with one get_many, not a read per job. A crash
(SIGKILL, power) leaves whole batches or nothing, and loading the file again completes it.

Each batch is a transaction of its own, not one for the whole file: another process writing
the same data file (a running server) waits for one batch at most, and readers never wait
(WAL). Into an empty or small SQLite store a large file is loaded without the upkeep of the
search indexes and tallies, which are made again once at the end (DeferredUpkeep).
"""

import json
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from ..config import DEFAULT_LOAD_BATCH_SIZE, DEFAULT_MAX_RESOURCE_BYTES
from ..resources.asyncjob import validate_async_job
from ..resources.outcome import FhirError
from ..storage.base import (
    DeferredUpkeep,
    JobRecord,
    JobStore,
    ManyReads,
    TransactionsUnavailable,
    VersionConflict,
    Write,
    check_resource_size,
)

SUFFIXES = (".json", ".ndjson")
LOAD_ATTEMPTS = 3
MAX_PROBLEMS = 100  # problems reported of one file; further invalid resources are counted
PROGRESS_EVERY = 1000  # jobs validated between two progress updates
# More than stamping adds to a job's canonical JSON (an id, meta.versionId, meta.lastUpdated).
STAMP_BYTES = 256
_decoder = json.JSONDecoder()

Counter = Callable[[int], None]


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


def _validated(
    path: Path, max_resource_bytes: int, on_validated: Counter | None = None
) -> Iterator[bytes]:
    """The canonical JSON (with an id) of each resource, as they are read. ValueError at the
    end, listing every problem, if any resource was invalid (those are not yielded)."""
    problems: list[str] = []
    unshown = 0  # invalid resources past MAX_PROBLEMS
    count = 0
    for line, item in _resources(path):
        try:
            job = validate_async_job(item)
            blob = orjson.dumps(job)
            # Measured exactly (stamped) only when it may come close to the limit.
            if len(blob) + STAMP_BYTES > max_resource_bytes:
                check_resource_size(job, max_resource_bytes)
        except FhirError as exc:
            if len(problems) < MAX_PROBLEMS:
                problems += [
                    f"{path}:{line}: {i.expression or '-'}: {i.diagnostics}" for i in exc.issues
                ]
            else:
                unshown += 1
            continue
        # A job without an id gets one now: it is stored under it, spooled with it.
        if "id" not in job:
            job = {"id": str(uuid.uuid4()), **job}
            blob = orjson.dumps(job)
        count += 1
        if on_validated is not None and count % PROGRESS_EVERY == 0:
            on_validated(PROGRESS_EVERY)
        yield blob
    if on_validated is not None:
        on_validated(count % PROGRESS_EVERY)
    if problems:
        if unshown:
            problems.append(f"{path}: and {unshown} more invalid resources")
        raise ValueError("\n".join(problems))


def _resources(path: Path) -> Iterator[tuple[int, Any]]:
    if path.suffix == ".ndjson":
        yield from _ndjson(path)
        return
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from exc
    try:
        start = len(text) - len(text.lstrip())
        document, _ = _decoder.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        for offset, entry in _bundle_entries(text, start):
            yield text.count("\n", 0, offset) + 1, entry.get("resource")
    else:
        yield text.count("\n", 0, start) + 1, document


def _ndjson(path: Path) -> Iterator[tuple[int, Any]]:
    """Each line's resource, read a line at a time (orjson: a few µs a job)."""
    try:
        with path.open("rb") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    try:
                        yield number, orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        raise ValueError(f"{path}:{number}: not valid JSON: {exc.msg}") from exc
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from exc


def _bundle_entries(text: str, start: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each Bundle.entry with the text offset where it begins (for line numbers)."""
    for key, offset in _members(text, start, "{"):
        if key == "entry":
            for _, entry_offset in _members(text, offset, "["):
                entry, _ = _decoder.raw_decode(text, entry_offset)
                yield entry_offset, entry if isinstance(entry, dict) else {}


def _members(text: str, offset: int, opener: str) -> Iterator[tuple[str | None, int]]:
    """(key or None, value offset) for the members of the object/array at offset."""
    position = _skip(text, offset)
    if text[position] != opener:
        return
    position = _skip(text, position + 1)
    closer = "}" if opener == "{" else "]"
    while text[position] != closer:
        key = None
        if opener == "{":
            key, position = _decoder.raw_decode(text, position)
            position = _skip(text, _skip(text, position) + 1)  # past the colon
        yield key, position
        _, position = _decoder.raw_decode(text, position)
        position = _skip(text, position)
        if text[position] == ",":
            position = _skip(text, position + 1)


def _skip(text: str, position: int) -> int:
    while text[position] in " \t\r\n":
        position += 1
    return position


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


def _batches(spool: IO[bytes], size: int) -> Iterator[list[dict[str, Any]]]:
    """The spooled jobs, `size` at a time; a job whose id is already in the batch starts the
    next one (it is a later version: written after the first)."""
    batch: list[dict[str, Any]] = []
    ids: set[str] = set()
    for line in spool:
        job = orjson.loads(line)
        if len(batch) >= size or job["id"] in ids:
            yield batch
            batch, ids = [], set()
        batch.append(job)
        ids.add(job["id"])
    if batch:
        yield batch


async def _store_spooled(
    store: JobStore,
    spool: IO[bytes],
    batch_size: int,
    report: LoadReport,
    on_stored: Counter | None,
) -> int:
    """Store the spooled jobs a batch at a time. One at a time, not the next one's rows made
    while the store writes: the writer thread needs the interpreter lock for every row it
    binds, and taking turns with this thread made both slower (measured: 5.3 s against
    5.1 s for 100,000 jobs)."""
    stored = 0
    for batch in _batches(spool, batch_size):
        stored += await store_batch(store, batch, report)
        if on_stored is not None:
            on_stored(len(batch))
    return stored


async def load_paths(
    store: JobStore,
    paths: list[Path],
    on_file: Callable[[Path, int], None] | None = None,
    *,
    max_resource_bytes: int = DEFAULT_MAX_RESOURCE_BYTES,
    batch_size: int = DEFAULT_LOAD_BATCH_SIZE,
    on_validated: Counter | None = None,
    on_stored: Counter | None = None,
) -> LoadReport:
    """Validate, then store, each file (see the module docstring). on_validated and on_stored
    count jobs as they go; on_file is called with each file stored and its jobs written."""
    report = LoadReport()
    deferred = False
    try:
        for path in find_files(paths):
            report.files += 1
            with tempfile.TemporaryFile() as spool:
                try:
                    count = 0
                    for blob in _validated(path, max_resource_bytes, on_validated):
                        spool.write(blob)
                        spool.write(b"\n")
                        count += 1
                except ValueError as exc:
                    report.errors.append(str(exc))
                    continue
                spool.seek(0)
                if not deferred and isinstance(store, DeferredUpkeep):
                    deferred = report.all_new = await store.defer_upkeep(count)
                stored = await _store_spooled(store, spool, batch_size, report, on_stored)
            report.stored += stored
            if on_file is not None:
                on_file(path, stored)
    finally:
        if deferred:
            assert isinstance(store, DeferredUpkeep)
            await store.restore_upkeep()
    return report
