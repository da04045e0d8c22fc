"""The synthetic AsyncJobs every benchmark run seeds: ids bench-0000000, bench-0000001, ..."""

from typing import Any

from fhir_server.resources.asyncjob import STATUSES


def job_id(i: int) -> str:
    return f"bench-{i:07d}"


def bench_job(i: int) -> dict[str, Any]:
    """A realistic job; statuses cycle so that each is a quarter of the store."""
    status = STATUSES[i % len(STATUSES)]
    day, second = divmod(i, 86_400)
    stamp = f"2026-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}T{second // 3600:02d}:"
    stamp += f"{second // 60 % 60:02d}:{second % 60:02d}.000Z"
    job: dict[str, Any] = {
        "resourceType": "AsyncJob",
        "id": job_id(i),
        "status": status,
        "type": {"coding": [{"system": "http://hl7.org/fhir/async-job-type", "code": "export"}]},
        "requestTime": stamp,
        "request": f"https://example.org/fhir/R4/Patient/$export?_since=2026-01-01&n={i}",
    }
    if status != "accepted":
        job["transactionTime"] = stamp
    if status == "completed":
        job["output"] = [{"type": "Patient", "url": f"https://files.example.org/{i}.ndjson"}]
    return job
