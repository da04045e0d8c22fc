"""Load AsyncJobs from files: a resource, a Bundle, NDJSON, or a folder of those.

Every resource of a file is validated first; a file with any invalid resource stores nothing.
"""

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import DEFAULT_MAX_RESOURCE_BYTES
from ..resources.asyncjob import validate_async_job
from ..resources.outcome import FhirError
from ..storage.base import (
    JobStore,
    VersionConflict,
    check_resource_size,
)

SUFFIXES = (".json", ".ndjson")
LOAD_ATTEMPTS = 3
_decoder = json.JSONDecoder()


@dataclass
class LoadReport:
    files: int = 0
    stored: int = 0
    errors: list[str] = field(default_factory=list)


def find_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        else:
            files.append(path)
    return files


def read_file(
    path: Path, max_resource_bytes: int = DEFAULT_MAX_RESOURCE_BYTES
) -> list[tuple[int, dict[str, Any]]]:
    """(line, validated resource) for every AsyncJob in the file; ValueError lists problems
    (a resource over max_resource_bytes is one: the file stores nothing then)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from exc
    problems: list[str] = []
    jobs: list[tuple[int, dict[str, Any]]] = []
    for line, item in _resources(path, text):
        try:
            job = validate_async_job(item)
            check_resource_size(job, max_resource_bytes)
            jobs.append((line, job))
        except FhirError as exc:
            problems += [
                f"{path}:{line}: {i.expression or '-'}: {i.diagnostics}" for i in exc.issues
            ]
    if problems:
        raise ValueError("\n".join(problems))
    return jobs


def _resources(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    try:
        if path.suffix == ".ndjson":
            for number, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    yield number, json.loads(line)
            return
        start = len(text) - len(text.lstrip())
        document, _ = _decoder.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        for offset, entry in _bundle_entries(text, start):
            yield text.count("\n", 0, offset) + 1, entry.get("resource")
    else:
        yield text.count("\n", 0, start) + 1, document


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
    """Store each job as a new version, skipping those already stored as they are, so loading
    the same files again (every `make run`) adds no versions. How many were written."""
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


def _same(stored: dict[str, Any], loaded: dict[str, Any]) -> bool:
    """Equal but for meta, which the store owns (versionId, lastUpdated)."""
    return {k: v for k, v in stored.items() if k != "meta"} == {
        k: v for k, v in loaded.items() if k != "meta"
    }


async def load_paths(
    store: JobStore,
    paths: list[Path],
    on_file: Callable[[Path, int], None] | None = None,
    *,
    max_resource_bytes: int = DEFAULT_MAX_RESOURCE_BYTES,
) -> LoadReport:
    report = LoadReport()
    for path in find_files(paths):
        report.files += 1
        try:
            jobs = read_file(path, max_resource_bytes)
        except ValueError as exc:
            report.errors.append(str(exc))
            continue
        stored = await store_jobs(store, [job for _, job in jobs])
        report.stored += stored
        if on_file is not None:
            on_file(path, stored)
    return report
