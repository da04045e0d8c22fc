"""An in-process worker: exports the server's AsyncJobs as NDJSON, one file per status.

It shows the producer side of the job lifecycle with JobService: report progress after each
step, complete with the output links, fail with an OperationOutcome, and stop as soon as the
job is cancelled (JobCancelled) — a progress write can never overwrite a cancel.
"""

import asyncio
import logging
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import orjson

from fhir_server import STATUSES, JobCancelled, JobQuery, JobRecord, JobService, SortKey, TokenMatch

log = logging.getLogger("export-worker")
PAGE = 500
SINCE = "_since"  # Bulk Data: only resources changed at or after this instant


class ExportWorker:
    """Runs each export job in its own task; `wait(id)` gives how the job ended."""

    def __init__(self, jobs: JobService, export_dir: Path, *, pause: float = 1.0) -> None:
        self.jobs = jobs
        self.export_dir = export_dir
        self.pause = pause  # between steps, so someone polling can watch it progress
        self.tasks: dict[str, asyncio.Task[str]] = {}

    def start(self, job: JobRecord) -> None:
        assert job.resource is not None
        files_url = urljoin(job.resource["request"], "/exports/")
        self.tasks[job.id] = asyncio.create_task(
            self.run(job.id, files_url, since_of(job.resource["request"]))
        )

    async def wait(self, job_id: str) -> str:
        return await self.tasks[job_id]

    async def stop(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def run(self, job_id: str, files_url: str, since: str | None = None) -> str:
        """'completed', 'cancelled' or 'error': how the job ended."""
        try:
            after = None if since is None else datetime.fromisoformat(since)
            output = []
            for step, status in enumerate(STATUSES, start=1):
                await asyncio.sleep(self.pause)
                count = await self.export_status(job_id, status, after)
                output.append(_file_parameter(f"{files_url}{job_id}/{status}.ndjson", count))
                progress = f"{step} of {len(STATUSES)} files written"
                await self.jobs.report_progress(job_id, progress)
            await self.jobs.complete(job_id, output)
            return "completed"
        except JobCancelled:
            log.info("AsyncJob/%s was cancelled: export stopped", job_id)
            return "cancelled"
        except Exception as exc:
            log.exception("AsyncJob/%s failed", job_id)
            try:
                await self.jobs.fail(job_id, f"Export failed: {exc}", status_code=500)
            except JobCancelled:
                return "cancelled"
            return "error"

    async def export_status(self, job_id: str, status: str, since: datetime | None = None) -> int:
        """Write every AsyncJob with this status (changed at or after `since`) to
        <export_dir>/<job>/<status>.ndjson."""
        where = ((TokenMatch("status", frozenset({status})),),)
        lines: list[bytes] = []
        read = 0
        while True:
            query = JobQuery(where=where, sort=(SortKey("id"),), limit=PAGE, offset=read)
            page = await self.jobs.store.search(query)
            read += len(page)
            lines += [orjson.dumps(r.resource) for r in page if _changed_since(r, since)]
            if len(page) < PAGE:
                break
        target = self.export_dir / job_id / f"{status}.ndjson"
        await asyncio.to_thread(_write, target, lines)
        return len(lines)


def since_of(request_url: str) -> str | None:
    """The kick-off's _since (from the URL the job records), if it named one."""
    values = parse_qs(urlsplit(request_url).query).get(SINCE)
    return values[0] if values else None


def _changed_since(record: JobRecord, since: datetime | None) -> bool:
    if since is None or record.resource is None:
        return True
    return datetime.fromisoformat(record.resource["meta"]["lastUpdated"]) >= since


def _write(path: Path, lines: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def _file_parameter(url: str, count: int) -> dict[str, object]:
    return {
        "name": "output",
        "part": [
            {"name": "type", "valueCode": "AsyncJob"},
            {"name": "url", "valueUri": url},
            {"name": "count", "valueInteger": count},
        ],
    }
