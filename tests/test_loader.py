"""Loading AsyncJobs from files: resources, Bundles, NDJSON, folders; bad files store nothing."""

import asyncio
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from fhir_server import cli
from fhir_server.cli import main
from fhir_server.config import Settings
from fhir_server.jobs.loader import load_paths
from fhir_server.search.query import JobQuery
from fhir_server.storage.base import JobStore

from .conftest import make_job


def write_bundle(path: Path, jobs: list[dict]) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": job} for job in jobs],
    }
    path.write_text(json.dumps(bundle, indent=2))


async def stored_ids(store: JobStore) -> list[str]:
    return sorted(r.id for r in await store.search(JobQuery(limit=1000)))


async def test_loads_a_single_resource_file(store: JobStore, tmp_path: Path):
    (tmp_path / "job.json").write_text(json.dumps(make_job(id="one")))
    report = await load_paths(store, [tmp_path / "job.json"])
    assert (report.files, report.stored, report.errors) == (1, 1, [])
    assert await stored_ids(store) == ["one"]


async def test_loads_a_bundle(store: JobStore, tmp_path: Path):
    write_bundle(tmp_path / "bundle.json", [make_job(id="a"), make_job(id="b")])
    await load_paths(store, [tmp_path / "bundle.json"])
    assert await stored_ids(store) == ["a", "b"]


async def test_loads_ndjson(store: JobStore, tmp_path: Path):
    lines = [json.dumps(make_job(id=f"n{i}")) for i in range(3)]
    (tmp_path / "jobs.ndjson").write_text("\n".join(lines) + "\n")
    await load_paths(store, [tmp_path / "jobs.ndjson"])
    assert await stored_ids(store) == ["n0", "n1", "n2"]


async def test_loads_a_folder_recursively(store: JobStore, tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.json").write_text(json.dumps(make_job(id="a")))
    (tmp_path / "sub" / "b.ndjson").write_text(json.dumps(make_job(id="b")))
    (tmp_path / "notes.txt").write_text("not a job")
    report = await load_paths(store, [tmp_path])
    assert report.files == 2
    assert await stored_ids(store) == ["a", "b"]


async def test_a_job_without_id_gets_one(store: JobStore, tmp_path: Path):
    (tmp_path / "job.json").write_text(json.dumps(make_job(id=None)))
    await load_paths(store, [tmp_path / "job.json"])
    [record] = await store.search(JobQuery())
    assert len(record.id) == 36


async def test_an_invalid_ndjson_line_is_reported_and_the_file_is_not_stored(
    store: JobStore, tmp_path: Path
):
    lines = [json.dumps(make_job(id="ok")), json.dumps(make_job(id="bad", status="running"))]
    (tmp_path / "jobs.ndjson").write_text("\n".join(lines))
    (tmp_path / "good.json").write_text(json.dumps(make_job(id="good")))
    report = await load_paths(store, [tmp_path])
    assert len(report.errors) == 1
    assert "jobs.ndjson:2: AsyncJob.status:" in report.errors[0]
    assert await stored_ids(store) == ["good"]


async def test_an_invalid_bundle_entry_is_reported_by_its_line(store: JobStore, tmp_path: Path):
    write_bundle(tmp_path / "bundle.json", [make_job(id="a"), make_job(id="b", request=None)])
    report = await load_paths(store, [tmp_path / "bundle.json"])
    [error] = report.errors
    text = (tmp_path / "bundle.json").read_text().splitlines()
    line = int(error.split(":")[1])
    assert text[line - 1].strip() == "{"
    assert '"id": "b"' in "\n".join(text[line - 1 : line + 4])
    assert "AsyncJob.request" in error
    assert await stored_ids(store) == []


async def test_malformed_json_is_reported_with_its_line(store: JobStore, tmp_path: Path):
    (tmp_path / "broken.json").write_text('{\n  "resourceType": "AsyncJob",\n  oops\n}')
    report = await load_paths(store, [tmp_path / "broken.json"])
    assert report.errors and "broken.json:3: not valid JSON" in report.errors[0]


async def test_loading_the_same_file_twice_keeps_one_job(store: JobStore, tmp_path: Path):
    (tmp_path / "job.json").write_text(json.dumps(make_job(id="one")))
    await load_paths(store, [tmp_path])
    await load_paths(store, [tmp_path])
    assert await stored_ids(store) == ["one"]


def test_cli_load_exits_1_and_names_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture):
    (tmp_path / "bad.json").write_text(json.dumps(make_job(status="running")))
    assert main(["load", str(tmp_path), "--data-dir", str(tmp_path / "data")]) == 1
    assert "bad.json:1: AsyncJob.status" in capsys.readouterr().err


def test_cli_load_stores_the_examples(tmp_path: Path, capsys: pytest.CaptureFixture):
    examples = Path(__file__).resolve().parent.parent / "examples" / "jobs"
    assert main(["load", str(examples), "--data-dir", str(tmp_path)]) == 0
    assert "stored" in capsys.readouterr().err


def test_cli_load_shows_progress_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100, highlight=False)
    monkeypatch.setattr(cli, "console", terminal)
    folder = tmp_path / "jobs"
    folder.mkdir()
    for n in range(3):
        (folder / f"job-{n}.json").write_text(json.dumps(make_job()))
    settings = Settings(data_dir=tmp_path / "data")
    assert asyncio.run(cli.load(settings, [folder])) == 0
    shown = screen.getvalue()
    assert "loading" in shown and "100%" in shown
    assert "stored 3 new or changed jobs from 3 files" in shown
