"""Retention: JobStore.purge, `fhir-server purge --older-than` and the background sweep."""

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server import cli
from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.durations import parse_duration
from fhir_server.jobs import retention
from fhir_server.resources.asyncjob import FINAL_STATUSES
from fhir_server.storage.base import JobStore

from .conftest import put_job
from .servers import ROOT, clean_env
from .test_loader_stopped import files_up_to

LATER = "2999-01-01T00:00:00.000Z"


class Unclosable:
    """The test's store, handed to code that closes what it opens."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def close(self) -> None:
        return None


@pytest.fixture
def eight_days_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every job stored now looks 8 days old to the retention code."""
    later = datetime.now(UTC) + timedelta(days=8)
    monkeypatch.setattr(retention, "utc_now", lambda: later)


async def stored_jobs(store: JobStore) -> None:
    for status in ("accepted", "completed", "error", "cancelled"):
        await put_job(store, id=status, status=status)


async def test_purge_removes_final_jobs_and_keeps_accepted_ones(store: JobStore):
    await stored_jobs(store)
    removed = await store.purge(before=LATER, statuses=FINAL_STATUSES)
    assert removed == 3
    assert await store.get("accepted") is not None
    for status in FINAL_STATUSES:
        assert await store.get(status) is None


async def test_purge_removes_every_version(store: JobStore):
    await put_job(store, id="job-1")
    await put_job(store, id="job-1", status="completed")
    await store.purge(before=LATER, statuses=FINAL_STATUSES)
    assert await store.history("job-1") == []
    assert await store.get_version("job-1", 1) is None


async def test_purge_keeps_jobs_updated_after_the_limit(store: JobStore):
    await put_job(store, id="job-1", status="completed")
    assert await store.purge(before="2000-01-01T00:00:00.000Z", statuses=FINAL_STATUSES) == 0
    assert await store.get("job-1") is not None


async def test_purge_removes_old_deleted_jobs(store: JobStore):
    await put_job(store, id="job-1")
    await store.delete("job-1", expected_version=1)
    assert await store.purge(before=LATER, statuses=FINAL_STATUSES) == 1
    assert await store.history("job-1") == []


async def test_purged_job_reads_as_404_not_410(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1", status="completed")
    await store.purge(before=LATER, statuses=FINAL_STATUSES)
    assert (await client.get("AsyncJob/job-1")).status_code == 404


async def test_purge_older_than_counts_from_now(store: JobStore, eight_days_later: None):
    await stored_jobs(store)
    assert await retention.purge_older_than(store, timedelta(days=9)) == 0
    assert await retention.purge_older_than(store, timedelta(days=7)) == 3


async def test_purge_command_removes_only_old_final_jobs(
    store: JobStore, eight_days_later: None, monkeypatch: pytest.MonkeyPatch
):
    await stored_jobs(store)
    monkeypatch.setattr(cli, "build_store", lambda settings: Unclosable(store))
    assert await cli.purge(Settings(), parse_duration("7d")) == 0
    assert await store.get("accepted") is not None
    assert await store.get("completed") is None


def test_purge_command_on_a_store_it_cannot_write_says_so_in_a_line(tmp_path: Path):
    """A full disk at open: it was a StoreUnavailable traceback."""
    purge = ["purge", "--older-than", "7d", "--data-dir", str(tmp_path / "data")]
    failed = subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", *purge],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        preexec_fn=files_up_to(2000),
    )
    assert failed.returncode == 1
    assert f"purge failed: disk I/O error (the store: {tmp_path / 'data'})" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_purge_command_rejects_a_malformed_age(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        cli.main(["purge", "--older-than", "a week"])
    assert exited.value.code == 2
    assert "is not a duration" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_durations_are_a_number_and_a_unit(text: str, expected: timedelta):
    assert parse_duration(text) == expected


def test_retention_setting_reads_durations_and_is_off_by_default():
    assert Settings().retention is None
    assert Settings(retention="7d").retention == timedelta(days=7)


async def test_sweep_in_the_app_lifespan_purges_old_final_jobs(
    store: JobStore, eight_days_later: None
):
    await stored_jobs(store)
    settings = Settings(secret_key="s", retention="7d", retention_interval="1h")
    app = create_app(settings, store=Unclosable(store))  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        for _ in range(100):
            if await store.get("completed") is None:
                break
            await asyncio.sleep(0.01)
    assert await store.get("completed") is None
    assert await store.get("accepted") is not None


async def test_without_retention_the_app_purges_nothing(store: JobStore, eight_days_later: None):
    await stored_jobs(store)
    app = create_app(Settings(secret_key="s"), store=Unclosable(store))  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        await asyncio.sleep(0.05)
    assert await store.get("completed") is not None
