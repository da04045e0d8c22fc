"""Writes a small SQLite data file with the code of commit c448ebd (schema version 2: tables
job, job_version, job_tally and schema_parameter), so tests/storage/test_schema_evolution.py
can check that the current code brings it to its own layout with every job and version.

Run against c448ebd's code, never the current one:

    git archive c448ebd fhir_server | tar -x -C /tmp/c448ebd
    PYTHONPATH=/tmp/c448ebd .venv/bin/python tests/data/upgrade/make_c448ebd_fixture.py \
        tests/data/upgrade

It writes, into the given directory:
- c448ebd.sqlite3: the data file (WAL checkpointed into it; 1 KiB pages, to keep it small);
- c448ebd-expected.json: every job's history and the answer (ids in order and count) to each
  search in SEARCHES, as that code gave them.
"""

import asyncio
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import fhir_server
from fhir_server.search.query import JobQuery, TokenMatch
from fhir_server.storage import sqlite_schema
from fhir_server.storage.sqlite import SqliteJobStore

SQLITE_FILE = "c448ebd.sqlite3"
EXPECTED_FILE = "c448ebd-expected.json"
JOBS = 8
OWNERS = ("alice", "bob", None)
TYPES = ("export", None, "data-migration")
# Each search as (name, token column, values, owner); tests decode them the same way.
SEARCHES = [
    ("everything", None, [], None),
    ("completed", "status", ["completed"], None),
    ("accepted or error", "status", ["accepted", "error"], None),
    ("exports", "type", ["export"], None),
    ("alice's", None, [], "alice"),
]


def decode(column: str | None, values: list[str], owner: str | None) -> JobQuery:
    where = () if column is None else ((TokenMatch(column, frozenset(values)),),)
    return JobQuery(where=where, owner=owner)


async def fill(store: SqliteJobStore) -> None:
    """8 jobs, most with a second version; one deleted, one deleted and created again."""
    for i in range(JOBS):
        job: dict[str, Any] = {
            "resourceType": "AsyncJob",
            "id": f"job-{i}",
            "status": "accepted",
            "requestTime": f"2026-01-01T00:0{i}:00.000Z",
            "request": f"https://example.org/fhir/R4/$export?n={i}",
        }
        if TYPES[i % 3] is not None:
            job["type"] = TYPES[i % 3]
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


async def main(out: Path) -> None:
    made_by = f"{fhir_server.__file__}: run this against the code of c448ebd"
    assert sqlite_schema.SCHEMA_VERSION == 2, made_by
    path = out / SQLITE_FILE
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as db:  # an empty file with small pages, before the store's
        db.execute("PRAGMA page_size = 1024")
        db.execute("VACUUM")
    store = SqliteJobStore(path)
    await store.open()
    await fill(store)
    histories = {
        f"job-{i}": [
            {"version": r.version, "last_updated": r.last_updated, "owner": r.owner}
            | {"resource": r.resource}
            for r in await store.history(f"job-{i}")
        ]
        for i in range(JOBS)
    }
    searches = {}
    for name, column, values, owner in SEARCHES:
        query = decode(column, values, owner)
        ids = [r.id for r in await store.search(query)]
        searches[name] = {"ids": ids, "count": await store.count(query)}
    await store.close()  # the last connection: checkpoints the WAL into the file
    expected = {"searches": SEARCHES, "histories": histories, "answers": searches}
    (out / EXPECTED_FILE).write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
