"""A write the store acknowledged survives the process being killed."""

import signal
import sqlite3
from pathlib import Path

from fhir_server.storage.sqlite import SqliteJobStore

from ..servers import start_writer


async def test_every_acknowledged_write_survives_sigkill(tmp_path: Path):
    path = tmp_path / "jobs.sqlite3"
    writer = start_writer(path, count=0)
    assert writer.stdout is not None
    acknowledged = [writer.stdout.readline().strip() for _ in range(40)]
    writer.send_signal(signal.SIGKILL)
    acknowledged += [line.strip() for line in writer.stdout if line.strip()]
    writer.wait()
    assert writer.returncode == -signal.SIGKILL
    store = SqliteJobStore(path)
    await store.open()
    missing = [job_id for job_id in acknowledged if await store.get(job_id) is None]
    await store.close()
    assert missing == []


async def test_the_file_is_intact_after_sigkill(tmp_path: Path):
    path = tmp_path / "jobs.sqlite3"
    writer = start_writer(path, count=0)
    assert writer.stdout is not None
    for _ in range(40):
        writer.stdout.readline()
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
