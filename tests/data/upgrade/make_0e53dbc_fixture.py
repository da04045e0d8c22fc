"""Writes a small SQLite data file with the code of commit 0e53dbc (schema version 6: two
indexes per sort column, the id ascending under either direction), with two kinds in it, so
tests/storage/test_schema_evolution.py can check that the current code brings it to version 7
with every resource and version.

Run against 0e53dbc's code, never the current one:

    git archive 0e53dbc fhir_server | tar -x -C /tmp/0e53dbc
    PYTHONPATH=/tmp/0e53dbc .venv/bin/python tests/data/upgrade/make_0e53dbc_fixture.py \
        tests/data/upgrade

It writes, into the given directory:
- 0e53dbc.sqlite3: the data file (WAL checkpointed into it; 1 KiB pages, to keep it small);
- 0e53dbc-expected.json: every resource's history, by type and id, as that code gave them.
"""

import asyncio
import json
import sqlite3
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import fhir_server
from fhir_server.resources.asyncjob import ASYNC_JOB
from fhir_server.storage import sqlite_schema
from fhir_server.storage.sqlite import SqliteJobStore

SQLITE_FILE = "0e53dbc.sqlite3"
EXPECTED_FILE = "0e53dbc-expected.json"
# A kind of the tests only, stored as AsyncJob is (test_schema_evolution.py has the same).
TEST_THING = replace(ASYNC_JOB, type="TestThing")
OWNERS = ("alice", "bob", None)


async def fill(store: SqliteJobStore, resource_type: str, count: int) -> list[str]:
    """`count` resources, most with a second version; one deleted, one deleted and created
    again; one of 5 KB (on overflow pages)."""
    ids = []
    for i in range(count):
        job: dict[str, Any] = {
            "resourceType": resource_type,
            "id": f"{resource_type.lower()}-{i}",
            "status": "accepted",
            "requestTime": f"2026-01-01T00:0{i}:00.000Z",
            "request": f"https://example.org/fhir/R4/$export?n={i}",
        }
        if i == 1:
            job["request"] += "&pad=" + "x" * 5_000
        owner = OWNERS[i % 3]
        record = await store.save(job, expected_version=0, owner=owner)
        if i % 4:
            job = {**job, "status": ("completed", "error", "completed")[i % 4 - 1]}
            job["transactionTime"] = f"2026-01-02T00:0{i}:00.000Z"
            record = await store.save(job, expected_version=record.version, owner=owner)
        if i in (3, 5):
            record = await store.delete(job["id"], expected_version=record.version)
        if i == 5:
            await store.save(job, expected_version=record.version, owner=owner)
        ids.append(job["id"])
    return ids


async def main(out: Path) -> None:
    made_by = f"{fhir_server.__file__}: run this against the code of 0e53dbc"
    assert sqlite_schema.SCHEMA_VERSION == 6, made_by
    path = out / SQLITE_FILE
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as db:  # an empty file with small pages, before the store's
        db.execute("PRAGMA page_size = 1024")
        db.execute("VACUUM")
    expected: dict[str, dict[str, Any]] = {}
    for kind, count in ((ASYNC_JOB, 8), (TEST_THING, 6)):
        store = SqliteJobStore(path, kind)
        await store.open()
        expected[kind.type] = {
            resource_id: [
                {"version": r.version, "last_updated": r.last_updated, "owner": r.owner}
                | {"resource": r.resource}
                for r in await store.history(resource_id)
            ]
            for resource_id in await fill(store, kind.type, count)
        }
        await store.close()  # the last connection: checkpoints the WAL into the file
    (out / EXPECTED_FILE).write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
