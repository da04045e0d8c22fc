"""Writes the upgrade fixtures with the code of commit c436025 (schema version 1, no recorded
search parameters), so tests/storage/test_schema_evolution.py can check that the current code
opens what that version wrote and answers the same searches.

Run against c436025's code, never the current one:

    git archive c436025 fhir_server | tar -x -C /tmp/c436025
    PYTHONPATH=/tmp/c436025 .venv/bin/python tests/data/upgrade/make_fixture.py tests/data/upgrade

It writes, into the given directory:
- c436025.sqlite3: the data file of the embedded store (WAL checkpointed into it);
- c436025-mongo.json: the documents of collections asyncjob and asyncjob_history that
  MongoJobStore wrote (through mongomock);
- c436025-expected.json: per backend, every job's history and the answer (ids in order and
  count) to each search in SEARCHES, as that code gave them.
"""

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from mongomock_motor import AsyncMongoMockClient

import fhir_server
from fhir_server.search.dates import parse_instant_ms
from fhir_server.search.query import Cursor, DateRange, JobQuery, Missing, SortKey, TokenMatch
from fhir_server.storage import sqlite
from fhir_server.storage.mongo import MongoJobStore
from fhir_server.storage.sqlite import SqliteJobStore

JOBS = 30
OWNERS = ("alice", "bob", None)
TYPES = ("data-migration", None, "export")
FINAL = ("completed", "error", "cancelled")
SQLITE_FILE = "c436025.sqlite3"
MONGO_FILE = "c436025-mongo.json"
EXPECTED_FILE = "c436025-expected.json"


def request_time(i: int) -> str:
    return f"2026-01-01T00:{i // 2:02d}:00.000Z"  # two jobs per minute: ties to break by id


def token(column: str, *values: str, negate: bool = False) -> dict[str, Any]:
    return {"kind": "TokenMatch", "column": column, "values": list(values), "negate": negate}


def missing(column: str, is_missing: bool) -> dict[str, Any]:
    return {"kind": "Missing", "column": column, "missing": is_missing}


def dates(column: str, lower: str, upper: str, negate: bool = False) -> dict[str, Any]:
    return {
        "kind": "DateRange",
        "column": column,
        "lower": parse_instant_ms(lower),
        "upper": parse_instant_ms(upper),
        "negate": negate,
    }


# Each search as JSON: where (all of, each any of), sort ([column, descending]), limit,
# offset, cursor ({values, id, forward}) and owner; tests decode them the same way.
SEARCHES: list[dict[str, Any]] = [
    {"name": "status", "where": [[token("status", "completed")]]},
    {
        "name": "status any of, by request time",
        "where": [[token("status", "accepted", "error")]],
        "sort": [["request_time", False]],
    },
    {
        "name": "status:not, by id descending",
        "where": [[token("status", "completed", negate=True)]],
        "sort": [["id", True]],
    },
    {
        "name": "transaction-time:missing, by request time descending",
        "where": [[missing("transaction_time", True)]],
        "sort": [["request_time", True]],
    },
    {
        "name": "type and transaction-time present, by type",
        "where": [
            [token("type", "data-migration", "export")],
            [missing("transaction_time", False)],
        ],
        "sort": [["type", False]],
    },
    {
        "name": "type:missing",
        "where": [[missing("type", True)]],
        "sort": [["last_updated", False]],
    },
    {
        "name": "request-time range",
        "where": [[dates("request_time", "2026-01-01T00:03:00Z", "2026-01-01T00:09:00Z")]],
        "sort": [["request_time", False]],
    },
    {
        "name": "request-time ne range, by last updated",
        "where": [[dates("request_time", "2026-01-01T00:03:00Z", "2026-01-01T00:09:00Z", True)]],
        "sort": [["last_updated", False]],
    },
    {"name": "everything, a page at an offset", "limit": 5, "offset": 3},
    {
        "name": "a page after a cursor, by request time descending",
        "sort": [["request_time", True]],
        "limit": 6,
        "cursor": {"values": [parse_instant_ms(request_time(20))], "id": "job-20"},
    },
    {"name": "one owner's newest", "owner": "alice"},
    {
        "name": "status, several where",
        "where": [[token("status", "accepted")], [missing("type", False)]],
    },
]


def decode(spec: dict[str, Any]) -> JobQuery:
    """The JobQuery a search spec stands for (tests/storage/test_schema_evolution.py has the
    same decoder for the current code)."""
    kinds = {"TokenMatch": TokenMatch, "Missing": Missing, "DateRange": DateRange}

    def condition(fields: dict[str, Any]) -> Any:
        args = {k: frozenset(v) if k == "values" else v for k, v in fields.items() if k != "kind"}
        return kinds[fields["kind"]](**args)

    cursor = spec.get("cursor")
    return JobQuery(
        where=tuple(tuple(condition(c) for c in any_of) for any_of in spec.get("where", [])),
        sort=tuple(SortKey(c, d) for c, d in spec.get("sort", [["last_updated", True]])),
        limit=spec.get("limit", 100),
        offset=spec.get("offset", 0),
        cursor=None
        if cursor is None
        else Cursor(tuple(cursor["values"]), cursor["id"], cursor.get("forward", True)),
        owner=spec.get("owner"),
    )


async def fill(store: Any) -> None:
    """30 jobs, most with a second version (a final status), some a third; two deleted, one
    of those created again."""
    for i in range(JOBS):
        job: dict[str, Any] = {
            "resourceType": "AsyncJob",
            "id": f"job-{i:02d}",
            "status": "accepted",
            "requestTime": request_time(i),
            "request": f"https://example.org/fhir/R4/$export?n={i}",
        }
        if TYPES[i % 3] is not None:
            job["type"] = TYPES[i % 3]
        if i % 5 == 0:
            job["minServerVersion"] = f"1.{i % 3}"
        owner = OWNERS[i % 3]
        record = await store.save(job, expected_version=0, owner=owner)
        if i % 4:
            final = FINAL[i % 4 - 1]
            job = {**job, "status": final}
            if final != "cancelled":
                job["transactionTime"] = f"2026-01-02T00:{i:02d}:00.000Z"
            record = await store.save(job, expected_version=record.version, owner=owner)
        if i % 6 == 1:
            job = {**job, "output": {"resourceType": "Parameters"}}
            record = await store.save(job, expected_version=record.version, owner=owner)
        if i in (7, 13):
            record = await store.delete(job["id"], expected_version=record.version)
        if i == 13:
            await store.save(job, expected_version=record.version, owner=owner)


async def answers(store: Any) -> dict[str, Any]:
    histories = {}
    for i in range(JOBS):
        job_id = f"job-{i:02d}"
        histories[job_id] = [
            {
                "version": r.version,
                "last_updated": r.last_updated,
                "owner": r.owner,
                "resource": r.resource,
            }
            for r in await store.history(job_id)
        ]
    searches = {}
    for spec in SEARCHES:
        query = decode(spec)
        searches[spec["name"]] = {
            "ids": [r.id for r in await store.search(query)],
            "count": await store.count(query),
        }
    return {"histories": histories, "searches": searches}


async def main(out: Path) -> None:
    made_by = f"{fhir_server.__file__}: run this against the code of c436025"
    assert getattr(sqlite, "SCHEMA_VERSION", None) == 1, made_by
    (out / SQLITE_FILE).unlink(missing_ok=True)
    sqlite_store = SqliteJobStore(out / SQLITE_FILE)
    await sqlite_store.open()
    await fill(sqlite_store)
    expected = {"searches": SEARCHES, "sqlite": await answers(sqlite_store)}
    await sqlite_store.close()  # the last connection: checkpoints the WAL into the file

    database = AsyncMongoMockClient()["fhir_server"]
    mongo_store = MongoJobStore(database)
    await mongo_store.open()
    await fill(mongo_store)
    expected["mongo"] = await answers(mongo_store)
    dump = {
        name: [doc async for doc in database[name].find({}).sort("_id", 1)]
        for name in ("asyncjob", "asyncjob_history")
    }
    (out / MONGO_FILE).write_text(json.dumps(dump, indent=1) + "\n")
    (out / EXPECTED_FILE).write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
