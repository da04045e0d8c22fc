"""SQLite trouble reaches the API as StoreUnavailable (503), never as a 500."""

import sqlite3
from pathlib import Path

import pytest

from fhir_server.storage import sqlite as sqlite_store
from fhir_server.storage.base import StoreUnavailable
from fhir_server.storage.sqlite import SqliteJobStore

from ..conftest import make_job


async def test_a_closed_store_reports_unavailable(tmp_path: Path):
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    await store.open()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.ping()


async def test_a_write_that_waits_too_long_for_the_lock_reports_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_MS", 50)
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    await store.open()
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.save(make_job(), expected_version=0)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        await store.close()


async def test_reads_go_on_while_another_process_holds_the_write_lock(tmp_path: Path):
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    await store.open()
    await store.save(make_job(id="job-1"), expected_version=0)
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert await store.get("job-1") is not None
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        await store.close()
