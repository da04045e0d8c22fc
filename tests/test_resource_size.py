"""A size limit per stored resource (FHIR_SERVER_MAX_RESOURCE_BYTES), on every write path.

Without it one owner stored hundreds of 1 MiB jobs, and every page, read and history of them
cost as much. The limit is on the resource's canonical JSON as stored (stamped, compact),
checked by the store itself, so no path around it exists: POST, PUT, the version $cancel
writes, the producer API (JobService), `fhir-server load`. A refused write stores nothing.
"""

import json
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhir_server import JobService
from fhir_server.jobs.loader import load_paths
from fhir_server.resources.instants import now_instant
from fhir_server.search.query import JobQuery
from fhir_server.storage.base import JobStore, ResourceTooLarge, stamp

from .conftest import make_job, put_job
from .servers import cli

LIMIT = 4096


@pytest.fixture
def limited(store: JobStore) -> JobStore:
    store.max_resource_bytes = LIMIT  # type: ignore[attr-defined]
    return store


def note(value: str) -> dict[str, str]:
    return {"name": "note", "valueString": value}


def padded(size: int, **fields: Any) -> dict[str, Any]:
    """A job whose stored JSON is about `size` bytes."""
    job = make_job(**fields)
    padding = "x" * max(size - len(json.dumps(job)) - 180, 1)
    return {**job, "output": {"resourceType": "Parameters", "parameter": [note(padding)]}}


def assert_too_costly(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert issue["code"] == "too-costly"
    assert f"a resource may have {LIMIT}" in issue["diagnostics"]


async def test_post_of_a_resource_over_the_limit_stores_nothing(
    client: httpx.AsyncClient, limited: JobStore
):
    assert_too_costly(await client.post("AsyncJob", json=padded(2 * LIMIT)))
    assert await limited.count(JobQuery()) == 0
    assert (await client.post("AsyncJob", json=padded(LIMIT // 2))).status_code == 201


async def test_put_over_the_limit_leaves_the_job_as_it_was(
    client: httpx.AsyncClient, limited: JobStore
):
    assert_too_costly(await client.put("AsyncJob/big", json=padded(2 * LIMIT, id="big")))
    assert await limited.get("big") is None
    await put_job(limited, id="job-1")
    assert_too_costly(await client.put("AsyncJob/job-1", json=padded(2 * LIMIT, id="job-1")))
    assert [r.version for r in await limited.history("job-1")] == [1]


async def test_a_cancel_that_would_grow_the_job_past_the_limit_is_refused(
    client: httpx.AsyncClient, limited: JobStore
):
    # "cancelled" is one byte longer than "accepted": a job at the limit cannot take it.
    job = padded(LIMIT, id="full")
    job["output"]["parameter"][0]["valueString"] += "x" * (
        LIMIT - len(orjson.dumps(stamp(job, 1, now_instant())))
    )
    record = await put_job(limited, **job)
    assert len(orjson.dumps(record.resource)) == LIMIT
    assert_too_costly(await client.post("AsyncJob/full/$cancel"))
    assert (await limited.get("full")).resource["status"] == "accepted"  # type: ignore[index]


async def test_the_producer_api_cannot_store_a_result_over_the_limit(limited: JobStore):
    jobs = JobService(limited)
    job = await jobs.submit("https://example.org/fhir/R4/$export", owner="alice")
    with pytest.raises(ResourceTooLarge):
        await jobs.complete(job.id, [{"name": "note", "valueString": "x" * LIMIT}])
    assert (await jobs.get(job.id)).version == 1


async def test_loading_a_file_with_a_resource_over_the_limit_stores_none_of_it(
    store: JobStore, tmp_path: Path
):
    jobs = [make_job(id="small"), padded(2 * LIMIT, id="big")]
    (tmp_path / "jobs.ndjson").write_text("\n".join(json.dumps(job) for job in jobs))
    report = await load_paths(store, [tmp_path], max_resource_bytes=LIMIT)
    assert report.stored == 0
    assert "AsyncJob/" in report.errors[0] and f"may have {LIMIT}" in report.errors[0]
    assert await store.count(JobQuery()) == 0
    # A loaded job without an id is named by its line.
    (tmp_path / "jobs.ndjson").write_text(json.dumps(padded(2 * LIMIT, id=None)))
    report = await load_paths(store, [tmp_path], max_resource_bytes=LIMIT)
    assert report.errors[0].startswith(f"{tmp_path / 'jobs.ndjson'}:1: -: AsyncJob would be")


def test_the_load_command_applies_the_setting(tmp_path: Path):
    (tmp_path / "big.json").write_text(json.dumps(padded(2 * LIMIT, id="big")))
    data = tmp_path / "data"
    big = str(tmp_path / "big.json")
    loaded = cli("load", "--data-dir", str(data), "--max-resource-bytes", str(LIMIT), big)
    assert loaded.returncode == 1
    assert f"may have {LIMIT}" in loaded.stdout + loaded.stderr
