"""The AsyncJob profile is enforced on every write path (REST create and update, `fhir-server
load`; JobService in test_job_service.py): a job that breaks it gets a 422 OperationOutcome and
nothing is stored. Jobs stored before the profile stay readable and changeable."""

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.cli import main
from fhir_server.jobs.loader import load_paths
from fhir_server.search.query import JobQuery
from fhir_server.storage.base import JobStore

from .conftest import make_job, put_job

BREAKING = {
    "type-outside-the-value-set": ({"type": "export"}, "code-invalid", "AsyncJob.type"),
    "data-migration-without-minServerVersion": (
        {"type": "data-migration", "dataVersion": 4},
        "invariant",
        "AsyncJob.minServerVersion",
    ),
}


def single_issue(response: httpx.Response) -> tuple[str, str]:
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    [issue] = outcome["issue"]
    return issue["code"], issue["expression"][0]


@pytest.mark.parametrize(("fields", "code", "path"), BREAKING.values(), ids=BREAKING.keys())
async def test_create_breaking_the_profile_is_422_and_stores_nothing(
    client: httpx.AsyncClient, store: JobStore, fields: dict[str, Any], code: str, path: str
):
    response = await client.post("AsyncJob", json=make_job(**fields))
    assert response.status_code == 422
    assert single_issue(response) == (code, path)
    assert await store.count(JobQuery()) == 0


@pytest.mark.parametrize(("fields", "code", "path"), BREAKING.values(), ids=BREAKING.keys())
async def test_update_breaking_the_profile_is_422_and_stores_nothing(
    client: httpx.AsyncClient, store: JobStore, fields: dict[str, Any], code: str, path: str
):
    await put_job(store, id="job-1", type="bulk-export")
    response = await client.put("AsyncJob/job-1", json=make_job(id="job-1", **fields))
    assert response.status_code == 422
    assert single_issue(response) == (code, path)
    record = await store.get("job-1")
    assert record is not None and record.version == 1


async def test_put_creating_a_job_that_breaks_the_profile_stores_nothing(
    client: httpx.AsyncClient, store: JobStore
):
    response = await client.put("AsyncJob/new-1", json=make_job(id="new-1", type="export"))
    assert response.status_code == 422
    assert await store.get("new-1") is None


async def test_a_job_stored_before_the_profile_is_read_as_stored(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="legacy", type="export")
    response = await client.get("AsyncJob/legacy")
    assert response.status_code == 200
    assert response.json()["type"] == "export"


async def test_updating_a_job_stored_before_the_profile_keeps_its_old_type(
    client: httpx.AsyncClient, store: JobStore
):
    """The update is checked like any other, except for what the stored version already broke:
    no job becomes unchangeable, and none gets worse."""
    await put_job(store, id="legacy", type="export")
    legacy = make_job(id="legacy", type="export")
    done = await client.put("AsyncJob/legacy", json={**legacy, "status": "completed"})
    assert done.status_code == 200, done.text
    assert done.json()["type"] == "export"
    await put_job(store, id="legacy-2", type="export")
    renamed = await client.put("AsyncJob/legacy-2", json=make_job(id="legacy-2", type="exp"))
    assert renamed.status_code == 422
    fixed = await client.put("AsyncJob/legacy-2", json=make_job(id="legacy-2", type="bulk-export"))
    assert fixed.status_code == 200


async def test_load_refuses_a_file_with_a_job_breaking_the_profile(store: JobStore, tmp_path: Path):
    jobs = [make_job(id="fine", type="reindex"), make_job(id="bad", type="export")]
    (tmp_path / "jobs.ndjson").write_text("\n".join(json.dumps(job) for job in jobs))
    report = await load_paths(store, [tmp_path])
    assert report.stored == 0
    assert "jobs.ndjson:2: AsyncJob.type: Unknown AsyncJob type 'export'" in report.errors[0]
    assert await store.count(JobQuery()) == 0


def test_cli_load_names_the_broken_invariant(tmp_path: Path, capsys: pytest.CaptureFixture):
    (tmp_path / "migration.json").write_text(json.dumps(make_job(type="data-migration")))
    assert main(["load", str(tmp_path), "--data-dir", str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err
    assert "migration.json:1: AsyncJob.minServerVersion: ajb-1" in err
