"""A load's first pass: every resource of a file validated, its canonical JSON (with an id)
spooled to runs sorted by id, a large NDJSON file split among processes (one per core).

Sorted, so that the second pass stores the whole file in id order (merged): each B-tree the
store keys by id then takes every batch's rows past the last one's, filling pages once,
instead of every batch touching pages all over it (benchmarks/README.md#fhir-server-load).
A run holds RUN_JOBS jobs at most: memory stays flat however large the file. A run's line is
the id, a tab (which no id has, and which sorts before any character an id has), the JSON.

Worker processes are forked (jobs/forked.py): they share nothing with this one but the file
they read and the runs they write, and one counter each for the progress bar.
"""

import asyncio
import heapq
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from ..resources.asyncjob import validate_async_job
from ..resources.outcome import FhirError, Issue
from ..storage.base import check_resource_size
from .forked import die_with_parent, fork_context
from .reading import LongLine, line_at, resources, skip_line

RUN_JOBS = 50_000  # jobs sorted in memory at a time (about 20 MB)
PART_MIN_BYTES = 8 << 20  # an NDJSON file is split into parts of at least this size
MAX_PROBLEMS = 100  # problems reported of one file; further invalid resources are counted
PROGRESS_EVERY = 1000  # jobs validated between two progress updates
PROGRESS_POLL_SECONDS = 0.2
# More than stamping adds to a job's canonical JSON (an id, meta.versionId, meta.lastUpdated).
STAMP_BYTES = 256
# An NDJSON line is read up to this many times the resource limit (its whitespace and
# escapes may be more than the stored JSON's); a longer line is passed over, not held.
LINE_SLACK = 4

Counter = Callable[[int], None]


@dataclass
class Spooled:
    """What the first pass found in a file (or part of one): its valid jobs in sorted runs,
    and its invalid resources' problems."""

    runs: list[Path] = field(default_factory=list)
    count: int = 0
    problems: list[str] = field(default_factory=list)
    unshown: int = 0  # invalid resources past MAX_PROBLEMS

    def add(self, other: "Spooled") -> None:
        self.runs += other.runs
        self.count += other.count
        room = MAX_PROBLEMS - len(self.problems)
        self.problems += other.problems[:room]
        self.unshown += other.unshown + max(0, len(other.problems) - room)

    def error(self, path: Path) -> str | None:
        """The file's problems as one message, or None if every resource was valid."""
        if not self.problems:
            return None
        unshown = [f"{path}: and {self.unshown} more invalid resources"] if self.unshown else []
        return "\n".join([*self.problems, *unshown])


async def spool(
    path: Path,
    into: Path,
    *,
    max_resource_bytes: int,
    workers: int = 1,
    on_validated: Counter | None = None,
) -> Spooled:
    """Validate and spool path's resources into runs in the folder `into`, an NDJSON file
    of several parts in `workers` processes. ValueError if the file cannot be read or
    parsed."""
    parts = _parts(path, workers)
    if len(parts) == 1:
        return _spool_part(path, 0, *parts[0], into, max_resource_bytes, on_validated)
    context = fork_context()
    counts = context.Array("q", len(parts), lock=False)  # jobs validated, a slot per part
    found = Spooled()
    pool = ProcessPoolExecutor(
        len(parts), mp_context=context, initializer=_start_worker, initargs=(os.getpid(), counts)
    )
    loop = asyncio.get_running_loop()
    running = [
        loop.run_in_executor(pool, _spool_counted, path, i, start, end, into, max_resource_bytes)
        for i, (start, end) in enumerate(parts)
    ]
    try:
        reported = 0
        while not all(part.done() for part in running):
            await asyncio.wait(running, timeout=PROGRESS_POLL_SECONDS)
            if on_validated is not None and (now := sum(counts)) > reported:
                on_validated(now - reported)
                reported = now
        for part in running:
            found.add(part.result())
    except BaseException:
        # Cancelled (the command was stopped) or failed: the parts still running are not
        # waited for. (Python 3.14's terminate_workers() does this.)
        for part in running:
            part.cancel()
        for process in list(pool._processes.values()):
            process.kill()
        raise
    finally:
        pool.shutdown(cancel_futures=True)
    return found


def merged(runs: list[Path]) -> Iterator[tuple[bytes, bytes]]:
    """The spooled jobs' ids and JSON in id order; a job's versions in the order the file has
    them (the runs are in file order, and heapq.merge takes equal keys from the earlier
    run)."""
    with ExitStack() as stack:
        files = [stack.enter_context(run.open("rb")) for run in runs]
        for line in heapq.merge(*files, key=_run_key):
            tab = line.index(b"\t")
            yield line[:tab], line[tab + 1 :]


def _run_key(line: bytes) -> bytes:
    return line[: line.index(b"\t")]


def _parts(path: Path, workers: int) -> list[tuple[int, int | None]]:
    """Byte ranges of path, each starting at a line: one per worker for a large NDJSON file,
    else the whole file."""
    size = path.stat().st_size if path.suffix == ".ndjson" and path.is_file() else 0
    count = min(workers, size // PART_MIN_BYTES)
    if count < 2:
        return [(0, None)]
    starts = [0]
    with path.open("rb") as file:
        for k in range(1, count):
            file.seek(size * k // count - 1)
            skip_line(file)  # to the start of the next line
            if (start := file.tell()) > starts[-1] and start < size:
                starts.append(start)
    return list(zip(starts, [*starts[1:], None], strict=True))


_counts: Any = None  # a worker's slots of the shared progress counters


def _start_worker(parent: int, counts: Any) -> None:
    global _counts
    die_with_parent(parent)
    _counts = counts


def _spool_counted(
    path: Path, part: int, start: int, end: int | None, into: Path, max_resource_bytes: int
) -> Spooled:
    def count(n: int) -> None:
        _counts[part] += n

    return _spool_part(path, part, start, end, into, max_resource_bytes, count)


def _spool_part(
    path: Path,
    part: int,
    start: int,
    end: int | None,
    into: Path,
    max_resource_bytes: int,
    on_validated: Counter | None,
) -> Spooled:
    found = Spooled()
    run: list[tuple[bytes, bytes]] = []
    first_line = 0  # the part's first line number, counted when a problem needs it
    max_line_bytes = max_resource_bytes * LINE_SLACK
    for number, item in resources(path, start, end, max_line_bytes=max_line_bytes):
        try:
            if isinstance(item, LongLine):
                raise _too_long(item, max_line_bytes, max_resource_bytes)
            job = validate_async_job(item)
            blob = orjson.dumps(job)
            # Measured exactly (stamped) only when it may come close to the limit.
            if len(blob) + STAMP_BYTES > max_resource_bytes:
                check_resource_size(job, max_resource_bytes)
        except FhirError as exc:
            if len(found.problems) < MAX_PROBLEMS:
                first_line = first_line or line_at(path, start)
                line = first_line + number - 1
                found.problems += [
                    f"{path}:{line}: {i.expression or '-'}: {i.diagnostics}" for i in exc.issues
                ]
            else:
                found.unshown += 1
            continue
        # A job without an id gets one now: it is stored under it, spooled with it.
        if "id" not in job:
            job = {"id": str(uuid.uuid4()), **job}
            blob = orjson.dumps(job)
        run.append((job["id"].encode(), blob))
        found.count += 1
        if on_validated is not None and found.count % PROGRESS_EVERY == 0:
            on_validated(PROGRESS_EVERY)
        if len(run) == RUN_JOBS:
            found.runs.append(_write_run(run, into / f"{part}-{len(found.runs)}.run"))
            run = []
    if run:
        found.runs.append(_write_run(run, into / f"{part}-{len(found.runs)}.run"))
    if on_validated is not None:
        on_validated(found.count % PROGRESS_EVERY)
    return found


def _too_long(line: LongLine, max_line_bytes: int, max_resource_bytes: int) -> FhirError:
    message = (
        f"the line is {line.size} bytes, over the {max_line_bytes} read of a line "
        f"(a resource may have {max_resource_bytes} as stored)"
    )
    return FhirError([Issue("too-costly", message)])


def _write_run(run: list[tuple[bytes, bytes]], path: Path) -> Path:
    run.sort(key=itemgetter(0))  # stable: a job's versions stay in file order
    try:
        with path.open("wb") as out:
            out.writelines(b"%s\t%s\n" % pair for pair in run)
    except OSError as exc:
        exc.filename = exc.filename or str(path)  # a failed write() names no file
        raise
    return path
