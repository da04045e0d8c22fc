"""`fhir-server serve` on the embedded store: workers, restarts, loading while it runs."""

import asyncio
import sqlite3
import stat
from pathlib import Path

import httpx

from fhir_server.storage.sqlite import SqliteJobStore

from .conftest import ADMIN_HEADERS, make_job
from .servers import cli, running_server, start_writer

EXAMPLES = Path(__file__).parent.parent / "examples" / "jobs"
EXAMPLE_ID = "0f6e2a8c-51b7-4d3e-8a9f-2b1c4d6e8f02"


async def hammer(base: str, job_id: str, done: asyncio.Event) -> list[httpx.Response]:
    """Read and search until done, on a fresh connection each time (so on either worker)."""
    answers: list[httpx.Response] = []
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=base + "/", limits=limits, timeout=30, headers=ADMIN_HEADERS
    ) as http:
        while not done.is_set():
            answers.append(await http.get(f"AsyncJob/{job_id}"))
            answers.append(await http.get("AsyncJob", params={"status": "accepted", "_count": 5}))
    return answers


async def test_two_workers_serve_reads_and_searches_during_writes(tmp_path: Path):
    data_dir = tmp_path / "data"
    with running_server(data_dir, workers=2) as base:
        store = SqliteJobStore(data_dir / "fhir-server.sqlite3")
        await store.open()
        await store.save(make_job(id="first"), expected_version=0)
        other_process = start_writer(store.path, count=100)
        done = asyncio.Event()
        readers = [asyncio.create_task(hammer(base, "first", done)) for _ in range(6)]
        for _ in range(100):
            await store.save(make_job(), expected_version=0)
        await asyncio.to_thread(other_process.wait)
        done.set()
        answers = [a for task in readers for a in await task]
        await store.close()
        total = httpx.get(f"{base}/AsyncJob", params={"_count": 0}, headers=ADMIN_HEADERS).json()[
            "total"
        ]
    failed = [(a.status_code, a.text[:200]) for a in answers if a.status_code != 200]
    assert failed == []
    assert len(answers) > 100
    assert other_process.returncode == 0
    assert total == 201


def test_next_links_work_on_every_worker(tmp_path: Path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    assert start_writer(data_dir / "fhir-server.sqlite3", count=30).wait() == 0
    with running_server(data_dir, workers=2) as base:
        seen: list[str] = []
        url: str | None = f"{base}/AsyncJob?_count=1"
        while url is not None and len(seen) < 40:
            # A new connection per page: uvicorn hands each to whichever worker accepts it.
            page = httpx.get(url, headers={"Connection": "close", **ADMIN_HEADERS})
            assert page.status_code == 200, page.text
            seen += [entry["resource"]["id"] for entry in page.json().get("entry", [])]
            url = next((k["url"] for k in page.json()["link"] if k["relation"] == "next"), None)
    assert len(seen) == len(set(seen)) == 30


def test_the_generated_secret_is_kept_private_in_the_data_dir(tmp_path: Path):
    data_dir = tmp_path / "data"
    with running_server(data_dir, workers=2):
        secret = data_dir / "secret-key"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_load_into_the_data_dir_of_a_running_server(tmp_path: Path):
    data_dir = tmp_path / "data"
    with running_server(data_dir) as base:
        assert httpx.get(f"{base}/AsyncJob/{EXAMPLE_ID}", headers=ADMIN_HEADERS).status_code == 404
        loaded = cli("load", str(EXAMPLES), "--data-dir", str(data_dir))
        assert loaded.returncode == 0, loaded.stderr
        answer = httpx.get(f"{base}/AsyncJob/{EXAMPLE_ID}", headers=ADMIN_HEADERS)
    assert answer.status_code == 200


def test_jobs_survive_a_restart(tmp_path: Path):
    data_dir = tmp_path / "data"
    with running_server(data_dir, "--load", str(EXAMPLES)) as base:
        assert httpx.get(f"{base}/AsyncJob/{EXAMPLE_ID}", headers=ADMIN_HEADERS).status_code == 200
    with running_server(data_dir) as base:
        answer = httpx.get(f"{base}/AsyncJob/{EXAMPLE_ID}", headers=ADMIN_HEADERS)
    assert answer.status_code == 200
    assert answer.json()["meta"]["versionId"] == "1"


def test_load_refuses_a_data_dir_of_a_newer_schema(tmp_path: Path):
    data_dir = tmp_path / "data"
    assert cli("load", str(EXAMPLES), "--data-dir", str(data_dir)).returncode == 0
    with sqlite3.connect(data_dir / "fhir-server.sqlite3") as db:
        db.execute("PRAGMA user_version = 99")
    refused = cli("load", str(EXAMPLES), "--data-dir", str(data_dir))
    assert refused.returncode == 1
    assert "written by a newer fhir-server" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_serve_refuses_a_data_dir_of_a_newer_schema(tmp_path: Path):
    data_dir = tmp_path / "data"
    assert cli("load", str(EXAMPLES), "--data-dir", str(data_dir)).returncode == 0
    with sqlite3.connect(data_dir / "fhir-server.sqlite3") as db:
        db.execute("PRAGMA user_version = 99")
    refused = cli("serve", "--data-dir", str(data_dir), "--port", "1")
    assert refused.returncode == 1
    assert "written by a newer fhir-server" in refused.stderr
    assert "Traceback" not in refused.stderr
