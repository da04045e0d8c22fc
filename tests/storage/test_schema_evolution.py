"""Schema evolution: a store opens what an older fhir-server (or another parameter list) wrote,
migrated; a migration that fails changes nothing and stops the server with a message."""

import asyncio
import json
import shutil
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from mongomock_motor import AsyncMongoMockClient

from fhir_server.resources.asyncjob import ASYNC_JOB, SEARCH_PARAMETERS
from fhir_server.resources.kinds import ResourceKind, SearchParameter
from fhir_server.search.query import (
    Cursor,
    DateRange,
    HistoryQuery,
    JobQuery,
    Missing,
    SortKey,
    TokenMatch,
)
from fhir_server.storage import opening, sqlite_schema
from fhir_server.storage.base import (
    JobStore,
    SchemaTooNew,
    StoreMigrationFailed,
    StoreUnavailable,
)
from fhir_server.storage.mongo import CURRENT, HISTORY, MongoJobStore
from fhir_server.storage.mongo_schema import SCHEMA
from fhir_server.storage.sqlite import FILE_NAME, SqliteJobStore, count_sql, search_sql
from fhir_server.storage.sqlite_schema import SCHEMA_VERSION

from ..conftest import ADMIN_HEADERS, put_job
from ..servers import cli, running_server

UPGRADE = Path(__file__).parent.parent / "data" / "upgrade"  # made by make_fixture.py there
EXPECTED = json.loads((UPGRADE / "c436025-expected.json").read_text())
SEARCHES = {spec["name"]: spec for spec in EXPECTED["searches"]}
BACKENDS = ["sqlite", "mongo"]

MIN_SERVER_VERSION = SearchParameter(
    "min-server-version",
    "token",
    "AsyncJob.minServerVersion",
    "The oldest server version that can import the job's data",
    "min_server_version",
    ("minServerVersion",),
)
EXTENDED = (*SEARCH_PARAMETERS, MIN_SERVER_VERSION)
# What the fixture's live jobs hold in minServerVersion (job-NN with NN % 5 == 0).
FIXTURE_VERSIONS = {"job-00": "1.0", "job-05": "1.2", "job-10": "1.1", "job-15": "1.0"}
FIXTURE_VERSIONS |= {"job-20": "1.2", "job-25": "1.1"}


def decode(spec: dict[str, Any]) -> JobQuery:
    """The JobQuery a search of the fixture stands for (as make_fixture.py decodes it)."""
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


class Backend:
    """One store's data, opened as often as a test likes, with any parameter list and kind."""

    def __init__(self, name: str, tmp_path: Path) -> None:
        self.name = name
        self.path = tmp_path / FILE_NAME
        self.database = AsyncMongoMockClient()["fhir_server"]

    def store(
        self,
        parameters: Sequence[SearchParameter] = SEARCH_PARAMETERS,
        kind: ResourceKind = ASYNC_JOB,
    ) -> JobStore:
        kind = replace(kind, search_parameters=tuple(parameters))
        if self.name == "sqlite":
            return SqliteJobStore(self.path, kind)
        return MongoJobStore(self.database, kind)

    async def opened(
        self,
        parameters: Sequence[SearchParameter] = SEARCH_PARAMETERS,
        kind: ResourceKind = ASYNC_JOB,
    ) -> JobStore:
        store = self.store(parameters, kind)
        await store.open()
        return store

    async def load_c436025(self) -> None:
        """The data the code of commit c436025 wrote, as it wrote it."""
        if self.name == "sqlite":
            shutil.copy(UPGRADE / "c436025.sqlite3", self.path)
            return
        dump = json.loads((UPGRADE / "c436025-mongo.json").read_text())
        for name in (CURRENT, HISTORY):
            await self.database[name].insert_many(dump[name])

    async def snapshot(self) -> Any:
        """Everything stored, to check that a failed migration left it as it was."""
        if self.name == "sqlite":
            with sqlite3.connect(self.path) as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                return version, list(db.iterdump())
        return {
            name: [doc async for doc in self.database[name].find({}).sort("_id", 1)]
            for name in (CURRENT, HISTORY, SCHEMA)
        } | {"indexes": await self.database[CURRENT].index_information()}

    async def recorded(self, kind: ResourceKind) -> list[str]:
        """The names of the search parameters recorded for the kind's tables or collection."""
        if self.name == "sqlite":
            with sqlite3.connect(self.path) as db:
                rows = db.execute(f"SELECT name FROM {kind.storage_name}_parameter")
                return sorted(name for (name,) in rows)
        record = await self.database[SCHEMA].find_one({"_id": kind.storage_name})
        return sorted(p["name"] for p in record["parameters"])

    async def indexed(self, kind: ResourceKind) -> set[str]:
        """The columns or fields that the indexes of the kind's live resources cover."""
        if self.name == "sqlite":
            with sqlite3.connect(self.path) as db:
                rows = db.execute(
                    "SELECT c.name FROM sqlite_master m, pragma_index_info(m.name) c "
                    "WHERE m.type = 'index' AND m.tbl_name = ?",
                    (kind.storage_name,),
                )
                return {name for (name,) in rows}
        indexes = await self.database[kind.storage_name].index_information()
        return {field for index in indexes.values() for field, _ in index["key"]}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend(request.param, tmp_path)


@pytest.fixture
async def upgraded(backend: Backend) -> AsyncIterator[JobStore]:
    await backend.load_c436025()
    store = await backend.opened()
    yield store
    await store.close()


# --- what c436025 wrote opens with every job, every version, the same search answers ---


async def test_every_job_and_version_written_by_c436025_is_read(
    upgraded: JobStore, backend: Backend
):
    histories = EXPECTED[backend.name]["histories"]
    assert len(histories) == 30
    for job_id, expected in histories.items():
        history = [
            {"version": r.version, "last_updated": r.last_updated, "owner": r.owner}
            | {"resource": r.resource}
            for r in await upgraded.history(job_id)
        ]
        assert history == expected, job_id
        newest = await upgraded.get(job_id)
        assert newest is not None
        assert (newest.version, newest.resource) == (
            expected[0]["version"],
            expected[0]["resource"],
        )
    assert any(v["resource"] is None for h in histories.values() for v in h)  # deletions too


async def test_versions_written_before_methods_were_recorded_read_as_post_put_delete(
    upgraded: JobStore, backend: Backend
):
    # A version written by c436025 says nothing of its request: a first version reads as a
    # POST that created the job, a deletion as a DELETE, any other as a PUT that updated it.
    histories = EXPECTED[backend.name]["histories"]
    expected = sorted(
        (
            (v["last_updated"], job_id, v["version"], _default_request(v))
            for job_id, versions in histories.items()
            for v in versions
        ),
        reverse=True,
    )
    everything = await upgraded.versions(HistoryQuery(limit=1000))
    assert [
        (r.last_updated, r.id, r.version, (r.method, r.created)) for r in everything
    ] == expected
    assert {method for *_, (method, _) in expected} == {"POST", "PUT", "DELETE"}


def _default_request(version: dict[str, Any]) -> tuple[str, bool]:
    if version["resource"] is None:
        return "DELETE", False
    return ("POST", True) if version["version"] == 1 else ("PUT", False)


# Since schema 7 ties go by id the sort's way (one index serves a sort both ways): the
# fixture's two jobs a minute come in descending id order under a descending sort, where
# c436025 had them ascending. A cursor made before keeps its place in the order.
TIES_SINCE_SCHEMA_7 = {
    "a page after a cursor, by request time descending": [
        "job-19",
        "job-18",
        "job-17",
        "job-16",
        "job-15",
        "job-14",
    ]
}


@pytest.mark.parametrize("name", list(SEARCHES))
async def test_searches_answer_as_c436025_did(upgraded: JobStore, backend: Backend, name: str):
    query = decode(SEARCHES[name])
    expected = EXPECTED[backend.name]["searches"][name]
    ids = TIES_SINCE_SCHEMA_7.get(name, expected["ids"])
    assert [r.id for r in await upgraded.search(query)] == ids
    assert await upgraded.count(query) == expected["count"]


async def test_a_c436025_file_is_brought_to_the_current_schema(upgraded: JobStore):
    assert isinstance(upgraded, (SqliteJobStore, MongoJobStore))
    if isinstance(upgraded, MongoJobStore):
        record = await upgraded._db[SCHEMA].find_one({"_id": CURRENT})
        assert [p["name"] for p in record["parameters"]] == [p.name for p in SEARCH_PARAMETERS]
        return
    with sqlite3.connect(upgraded.path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
        recorded = db.execute("SELECT name, column_name, type, path FROM asyncjob_parameter")
        assert sorted(recorded) == sorted(
            (p.name, p.column, p.type, ".".join(p.path)) for p in SEARCH_PARAMETERS
        )
    await put_job(upgraded, id="job-30", status="completed")  # the upgraded file takes writes
    assert await upgraded.count(decode(SEARCHES["status"])) == 9


def test_serve_opens_a_data_dir_of_c436025(tmp_path: Path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(UPGRADE / "c436025.sqlite3", data_dir / FILE_NAME)
    with running_server(data_dir) as base:
        found = httpx.get(f"{base}/AsyncJob", params={"status": "completed"}, headers=ADMIN_HEADERS)
    assert found.status_code == 200, found.text
    assert found.json()["total"] == EXPECTED["sqlite"]["searches"]["status"]["count"]


# --- what c448ebd wrote (schema version 2) is renamed to the kind's tables, losing nothing ---

C448EBD = json.loads((UPGRADE / "c448ebd-expected.json").read_text())  # make_c448ebd_fixture.py


def c448ebd_query(column: str | None, values: list[str], owner: str | None) -> JobQuery:
    """The JobQuery a search of that fixture stands for (as make_c448ebd_fixture.py has it)."""
    where = () if column is None else ((TokenMatch(column, frozenset(values)),),)
    return JobQuery(where=where, owner=owner)


def schema_names(path: Path) -> set[tuple[str, str, str]]:
    """(type, name, table) of each table, index and trigger in the file."""
    with sqlite3.connect(path) as db:
        return set(db.execute("SELECT type, name, tbl_name FROM sqlite_master"))


async def test_a_c448ebd_file_keeps_every_job_and_version_in_the_kinds_tables(tmp_path: Path):
    path = tmp_path / FILE_NAME
    shutil.copy(UPGRADE / "c448ebd.sqlite3", path)
    store = SqliteJobStore(path)
    await store.open()
    for job_id, expected in C448EBD["histories"].items():
        history = [
            {"version": r.version, "last_updated": r.last_updated, "owner": r.owner}
            | {"resource": r.resource}
            for r in await store.history(job_id)
        ]
        assert history == expected, job_id
        newest = await store.get(job_id)
        assert newest is not None
        assert (newest.version, newest.resource) == (
            expected[0]["version"],
            expected[0]["resource"],
        )
    assert any(v["resource"] is None for h in C448EBD["histories"].values() for v in h)
    for name, column, values, owner in C448EBD["searches"]:
        query = c448ebd_query(column, values, owner)
        assert [r.id for r in await store.search(query)] == C448EBD["answers"][name]["ids"]
        assert await store.count(query) == C448EBD["answers"][name]["count"]
    # The tally's triggers, made again under the new names, keep it up to date.
    await put_job(store, id="job-8", status="completed", type="export")
    await store.delete("job-0", expected_version=1)
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
        tally = "SELECT status, type, n FROM asyncjob_tally WHERE n > 0"
        grouped = "SELECT status, type, count(*) FROM asyncjob GROUP BY 1, 2"
        assert sorted(db.execute(tally)) == sorted(db.execute(grouped))
        # The owner tally (for the quotas) is made and filled on open, then kept by triggers.
        owners = "SELECT owner, jobs, bytes FROM asyncjob_owner WHERE jobs > 0"
        by_owner = (
            "SELECT owner, count(*), sum(length(resource)) FROM asyncjob "
            "WHERE owner IS NOT NULL GROUP BY owner"
        )
        assert sorted(db.execute(owners)) == sorted(db.execute(by_owner))
        recorded = db.execute("SELECT name, column_name, type, path FROM asyncjob_parameter")
        assert sorted(recorded) == sorted(
            (p.name, p.column, p.type, ".".join(p.path)) for p in SEARCH_PARAMETERS
        )
    # The tables, indexes and triggers of a new file: none of the old names is left.
    new = SqliteJobStore(tmp_path / "new.sqlite3")
    await new.open()
    await new.close()
    assert schema_names(path) == schema_names(new.path)
    tables = {name for type, name, _ in schema_names(path) if type == "table"}
    assert tables == {
        *("asyncjob", "asyncjob_version", "asyncjob_tally", "asyncjob_parameter"),
        *("asyncjob_owner", "oauth_client", "oauth_assertion"),
        # The change feed, made if absent (AUTOINCREMENT keeps its counter in sqlite_sequence).
        *("asyncjob_change", "sqlite_sequence"),
    }


async def test_a_c448ebd_file_whose_migration_fails_is_left_at_version_2(tmp_path: Path):
    path = tmp_path / FILE_NAME
    shutil.copy(UPGRADE / "c448ebd.sqlite3", path)
    with sqlite3.connect(path) as db:
        before = list(db.iterdump())
    # Each job's request is a URL, no instant: filling this column fails after the renaming.
    request_date = SearchParameter("request-date", "date", "", "", "request_date", ("request",))
    store = SqliteJobStore(
        path, replace(ASYNC_JOB, search_parameters=(*SEARCH_PARAMETERS, request_date))
    )
    with pytest.raises(StoreMigrationFailed, match="AsyncJob/job-0 has no valid value"):
        await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert list(db.iterdump()) == before


# --- what aa9172e wrote (schema version 3) keeps every version, out of the lookups' b-tree ---

AA9172E = json.loads((UPGRADE / "aa9172e-expected.json").read_text())  # make_aa9172e_fixture.py


async def test_an_aa9172e_file_keeps_every_version_of_every_kind_in_rowid_tables(tmp_path: Path):
    path = tmp_path / FILE_NAME
    shutil.copy(UPGRADE / "aa9172e.sqlite3", path)
    for kind in (ASYNC_JOB, TEST_THING):
        store = SqliteJobStore(path, kind)
        await store.open()
        for resource_id, expected in AA9172E[kind.type].items():
            history = [
                {"version": r.version, "last_updated": r.last_updated, "owner": r.owner}
                | {"resource": r.resource}
                for r in await store.history(resource_id)
            ]
            assert history == expected, resource_id
            newest = await store.get(resource_id)
            assert newest is not None
            assert (newest.version, newest.resource) == (
                expected[0]["version"],
                expected[0]["resource"],
            )
            # Its owner reads it with the owner in the query; anyone else finds nothing.
            owner = expected[0]["owner"]
            owned = await store.get(resource_id, owner=owner) if owner else None
            assert owned == (newest if owner else None)
            assert await store.get(resource_id, owner="mallory") is None
            assert await store.history(resource_id, owner="mallory") == []
            assert await store.get_version(resource_id, 1, owner="mallory") is None
        assert any(v["resource"] is None for h in AA9172E[kind.type].values() for v in h)
        await put_job(store, resourceType=kind.type, id="new", status="completed")
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
        versions = "SELECT sql FROM sqlite_master WHERE name = ?"
        for table in ("asyncjob_version", "testthing_version"):
            assert "WITHOUT ROWID" not in db.execute(versions, (table,)).fetchone()[0]
        for kind in ("asyncjob", "testthing"):
            # Each kind's owner tally (for the quotas) is made and filled on open.
            owners = f"SELECT owner, jobs, bytes FROM {kind}_owner WHERE jobs > 0"
            by_owner = (
                f'SELECT owner, count(*), sum(length(resource)) FROM "{kind}" '
                "WHERE owner IS NOT NULL GROUP BY owner"
            )
            assert sorted(db.execute(owners)) == sorted(db.execute(by_owner)) != []
    # The tables and indexes of a new file with both kinds.
    for kind in (ASYNC_JOB, TEST_THING):
        new = SqliteJobStore(tmp_path / "new.sqlite3", kind)
        await new.open()
        await new.close()
    assert schema_names(path) == schema_names(tmp_path / "new.sqlite3")


async def test_a_mongodb_history_gets_the_index_with_the_owner_in_place_of_the_old_one():
    database = AsyncMongoMockClient()["upgrade"]
    await database[HISTORY].create_index([("job", 1), ("version", -1)])  # as before
    await database[HISTORY].insert_one({"_id": "job-1/1", "job": "job-1", "version": 1})
    store = MongoJobStore(database)
    await store.open()
    keys = [info["key"] for info in (await database[HISTORY].index_information()).values()]
    by_time = [("last_updated", -1), ("job", -1), ("version", -1)]
    assert sorted(keys) == sorted(
        [
            [("_id", 1)],
            [("job", 1), ("version", -1), ("owner", 1)],
            by_time,  # the type's history
            [("owner", 1), *by_time],
        ]
    )
    assert await database[HISTORY].count_documents({}) == 1


# --- two kinds in one file (or database): each in its own tables, migrated on its own ---

# A kind of the tests only, stored as AsyncJob is (its validation is never called here).
TEST_THING = replace(ASYNC_JOB, type="TestThing")


async def test_two_kinds_in_one_file_see_only_their_own_resources(backend: Backend):
    jobs = await backend.opened()
    things = await backend.opened(kind=TEST_THING)
    await put_job(jobs, id="same", status="accepted")
    await put_job(things, resourceType="TestThing", id="same", status="completed")
    await put_job(things, resourceType="TestThing", id="thing", status="completed")
    job, thing = await jobs.get("same"), await things.get("same")
    assert job is not None and job.resource is not None
    assert thing is not None and thing.resource is not None
    assert (job.resource["resourceType"], thing.resource["resourceType"]) == (
        "AsyncJob",
        "TestThing",
    )
    assert await jobs.get("thing") is None
    assert await jobs.get_version("thing", 1) is None
    completed = JobQuery(where=((TokenMatch("status", frozenset({"completed"})),),))
    assert await jobs.search(completed) == []
    assert await jobs.count(completed) == 0
    assert sorted(r.id for r in await things.search(completed)) == ["same", "thing"]
    assert await things.count(completed) == 2
    # Writes and purges of one kind leave the other's resources as they were.
    await things.delete("same", expected_version=1)
    assert [(r.version, r.deleted) for r in await jobs.history("same")] == [(1, False)]
    everything = frozenset({"accepted", "completed"})
    assert await jobs.purge(before="2100-01-01T00:00:00.000Z", statuses=everything) == 1
    assert await jobs.count(JobQuery()) == 0
    assert [r.id for r in await things.search(JobQuery())] == ["thing"]
    assert [r.version for r in await things.history("same")] == [2, 1]
    await jobs.close()
    await things.close()


async def test_two_kinds_in_one_file_migrate_independently(backend: Backend):
    for kind, resource_type in ((ASYNC_JOB, "AsyncJob"), (TEST_THING, "TestThing")):
        store = await backend.opened(kind=kind)
        await put_job(store, resourceType=resource_type, id="x", minServerVersion="1.0")
        await put_job(store, resourceType=resource_type, id="y", minServerVersion="2.0")
        await store.close()
    two = JobQuery(where=((TokenMatch("min_server_version", frozenset({"2.0"})),),))

    things = await backend.opened(EXTENDED, kind=TEST_THING)  # TestThing's gets a parameter
    assert [r.id for r in await things.search(two)] == ["y"]
    assert await things.count(two) == 1
    await things.close()
    assert await backend.recorded(TEST_THING) == sorted(p.name for p in EXTENDED)
    assert "min_server_version" in await backend.indexed(TEST_THING)
    assert await backend.recorded(ASYNC_JOB) == sorted(p.name for p in SEARCH_PARAMETERS)
    assert "min_server_version" not in await backend.indexed(ASYNC_JOB)

    jobs = await backend.opened(EXTENDED)  # and AsyncJob's then, filled from its own jobs
    await put_job(jobs, id="z", minServerVersion="2.0")
    assert sorted(r.id for r in await jobs.search(two)) == ["y", "z"]
    assert await jobs.count(two) == 2
    await jobs.close()
    things = await backend.opened(kind=TEST_THING)  # TestThing's loses it: AsyncJob's keeps it
    await things.close()
    assert await backend.recorded(ASYNC_JOB) == sorted(p.name for p in EXTENDED)
    assert "min_server_version" in await backend.indexed(ASYNC_JOB)
    assert "min_server_version" not in await backend.indexed(TEST_THING)


async def test_a_kind_named_like_an_sql_keyword_has_tables_of_its_own(tmp_path: Path):
    groups = SqliteJobStore(tmp_path / FILE_NAME, replace(ASYNC_JOB, type="Group"))
    await groups.open()
    await put_job(groups, resourceType="Group", id="g", status="completed")
    completed = JobQuery(where=((TokenMatch("status", frozenset({"completed"})),),))
    assert [r.id for r in await groups.search(completed)] == ["g"]
    assert await groups.count(completed) == 1
    await groups.close()


# --- a parameter added, removed, or indexing another element ---


@pytest.fixture(params=["c436025", "current"])
async def with_jobs(request: pytest.FixtureRequest, backend: Backend) -> dict[str, str]:
    """Live jobs with a minServerVersion, by id: written by c436025 or by the current code."""
    if request.param == "c436025":
        await backend.load_c436025()
        return FIXTURE_VERSIONS
    store = await backend.opened()
    versions = {f"now-{i}": f"2.{i % 3}" for i in range(9)}
    for job_id, version in versions.items():
        await put_job(store, id=job_id, minServerVersion=version)
    await put_job(store, id="without")
    await store.close()
    return versions


def ids_with(versions: dict[str, str], *wanted: str) -> set[str]:
    return {job_id for job_id, version in versions.items() if version in wanted}


async def test_an_added_parameter_is_filled_from_the_stored_jobs_and_searched(
    backend: Backend, with_jobs: dict[str, str]
):
    store = await backend.opened(EXTENDED)
    value = sorted(with_jobs.values())[0]
    one = JobQuery(where=((TokenMatch("min_server_version", frozenset({value})),),))
    assert {r.id for r in await store.search(one)} == ids_with(with_jobs, value)
    assert await store.count(one) == len(ids_with(with_jobs, value))
    absent = JobQuery(where=((Missing("min_server_version", missing=True),),), limit=1000)
    everything = await store.count(JobQuery())
    assert await store.count(absent) == everything - len(with_jobs)
    # Jobs saved afterwards are indexed (and counted) as well.
    await put_job(store, id="later", minServerVersion=value)
    assert await store.count(one) == len(ids_with(with_jobs, value)) + 1
    await store.close()
    await assert_served_by_indexes(backend, one)


async def assert_served_by_indexes(backend: Backend, query: JobQuery) -> None:
    tokens = ("status", "type", "min_server_version")
    if backend.name == "mongo":
        indexes = (await backend.database[CURRENT].index_information()).values()
        assert [("min_server_version", 1), ("last_updated", 1), ("_id", 1)] in [
            i["key"] for i in indexes
        ]
        return
    sql, params = search_sql(query, tokens)
    with sqlite3.connect(backend.path) as db:
        steps = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
        index = "USING INDEX ix_asyncjob_min_server_version_last_updated"
        assert any(index in s for s in steps), steps
        assert not [s for s in steps if s == "SCAN asyncjob" or "TEMP B-TREE" in s], steps
        # The count reads the tally, whose key now has the new column, and it adds up.
        sql, params = count_sql(query, tokens)
        assert "FROM asyncjob_tally" in sql
        tally = "SELECT status, type, min_server_version, n FROM asyncjob_tally WHERE n > 0"
        grouped = "SELECT status, type, min_server_version, count(*) FROM asyncjob GROUP BY 1, 2, 3"
        assert sorted(db.execute(tally)) == sorted(db.execute(grouped))


async def test_a_removed_parameter_leaves_no_field_nor_index(
    backend: Backend, with_jobs: dict[str, str]
):
    store = await backend.opened(EXTENDED)
    await store.close()
    store = await backend.opened(SEARCH_PARAMETERS)
    await put_job(store, id="after", minServerVersion="3.0")  # writes go on without the field
    assert await store.count(JobQuery(where=((TokenMatch("status", frozenset({"accepted"})),),)))
    await store.close()
    if backend.name == "mongo":
        indexes = await backend.database[CURRENT].index_information()
        assert not [i for i in indexes.values() if "min_server_version" in dict(i["key"])]
        assert not await backend.database[CURRENT].count_documents(
            {"min_server_version": {"$exists": True}}
        )
        return
    with sqlite3.connect(backend.path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(asyncjob)")]
        tally = [row[1] for row in db.execute("PRAGMA table_info(asyncjob_tally)")]
        indexes = [row[0] for row in db.execute("SELECT sql FROM sqlite_master WHERE sql > ''")]
    assert "min_server_version" not in columns
    assert tally == ["status", "type", "n"]
    assert not [sql for sql in indexes if "min_server_version" in sql]


async def test_a_parameter_indexing_another_element_gets_its_values_again(backend: Backend):
    store = await backend.opened(EXTENDED)
    await put_job(store, id="job-1", minServerVersion="1.0", dataVersion=7)
    await store.close()
    other = replace(MIN_SERVER_VERSION, path=("dataVersion",))
    store = await backend.opened((*SEARCH_PARAMETERS, other))
    seven = JobQuery(where=((TokenMatch("min_server_version", frozenset({"7"})),),))
    assert [r.id for r in await store.search(seven)] == ["job-1"]
    assert await store.count(seven) == 1
    await store.close()


# --- a migration that fails changes nothing, and says what to do ---

# minServerVersion ("1.0") is no instant: filling this column fails.
NOT_A_DATE = SearchParameter(
    "bad-date", "date", "AsyncJob.minServerVersion", "", "bad_date", ("minServerVersion",)
)


async def test_a_failing_migration_changes_nothing_and_says_what_to_do(backend: Backend):
    store = await backend.opened()
    for i in range(3):
        await put_job(store, id=f"job-{i}", minServerVersion=f"1.{i}")
    await store.close()
    before = await backend.snapshot()
    store = backend.store((*SEARCH_PARAMETERS, MIN_SERVER_VERSION, NOT_A_DATE))
    with pytest.raises(StoreMigrationFailed) as failed:
        await store.open()
    await store.close()
    message = str(failed.value)
    assert "AsyncJob/job-0 has no valid value for search parameter bad-date" in message
    assert "Fix the cause and start again" in message
    assert not isinstance(failed.value, StoreUnavailable)  # which would be retried
    after = await backend.snapshot()
    if backend.name == "sqlite":
        assert after == before
    else:  # no transaction: the record is left as it was, so the next open starts again
        assert after[SCHEMA] == before[SCHEMA]
    store = await backend.opened()  # the data is still there for this parameter list
    assert len(await store.search(JobQuery())) == 3
    await store.close()


async def test_a_failing_schema_version_step_leaves_the_file_at_its_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / FILE_NAME
    shutil.copy(UPGRADE / "c436025.sqlite3", path)
    with sqlite3.connect(path) as db:
        before = list(db.iterdump())

    def half_done(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE schema_parameter (column_name TEXT)")
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setitem(sqlite_schema.MIGRATIONS, 1, half_done)
    store = SqliteJobStore(path)
    with pytest.raises(StoreMigrationFailed, match="malformed"):
        await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        assert list(db.iterdump()) == before


async def test_a_mongodb_database_of_a_newer_schema_is_refused():
    database = AsyncMongoMockClient()["fhir_server"]
    await database[SCHEMA].insert_one({"_id": CURRENT, "version": 99, "parameters": []})
    with pytest.raises(SchemaTooNew, match="newer fhir-server"):
        await MongoJobStore(database).open()


class Failing:
    """A store whose database is unreachable at first, then unusable."""

    def __init__(self, unreachable: int) -> None:
        self.unreachable = unreachable

    async def open(self) -> None:
        if self.unreachable:
            self.unreachable -= 1
            raise StoreUnavailable("connection refused")
        raise StoreMigrationFailed("cannot migrate: fix it")


async def test_opening_does_not_retry_a_failed_migration():
    with pytest.raises(StoreMigrationFailed):
        await opening.open_store(Failing(unreachable=0))  # type: ignore[arg-type]


async def test_a_failed_migration_found_by_the_retries_stops_the_server(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    stopped = asyncio.Event()
    monkeypatch.setattr(opening, "RETRY_SECONDS", 0.01)
    monkeypatch.setattr(opening, "_stop_serving", stopped.set)
    retrying = await opening.open_store(Failing(unreachable=3))  # type: ignore[arg-type]
    assert retrying is not None
    await asyncio.wait_for(stopped.wait(), 5)
    await retrying  # it has ended, not raised
    assert "cannot migrate: fix it" in caplog.text


async def test_serve_stops_with_the_message_when_the_migration_fails(tmp_path: Path):
    # An older server without request-time stored a job whose requestTime is no instant: this
    # one cannot index it.
    data_dir = tmp_path / "data"
    older = tuple(p for p in SEARCH_PARAMETERS if p.name != "request-time")
    store = SqliteJobStore(data_dir / FILE_NAME, replace(ASYNC_JOB, search_parameters=older))
    await store.open()
    await put_job(store, id="bad-job", requestTime="not an instant")
    await store.close()
    with sqlite3.connect(store.path) as db:
        before = list(db.iterdump())
    refused = await asyncio.to_thread(cli, "serve", "--data-dir", str(data_dir), "--port", "1")
    assert refused.returncode == 1
    assert "AsyncJob/bad-job has no valid value for search parameter request-time" in (
        refused.stderr
    )
    assert "Fix the cause and start again" in refused.stderr
    assert "Traceback" not in refused.stderr
    with sqlite3.connect(store.path) as db:
        assert list(db.iterdump()) == before


# --- what 0e53dbc wrote (schema version 6) gets one index per sort column, every version kept ---

E0E53DBC = json.loads((UPGRADE / "0e53dbc-expected.json").read_text())  # make_0e53dbc_fixture.py


async def test_a_0e53dbc_file_keeps_every_version_with_one_index_per_sort(tmp_path: Path):
    path = tmp_path / FILE_NAME
    shutil.copy(UPGRADE / "0e53dbc.sqlite3", path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 6
        before = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "ix_asyncjob_last_updated_desc" in before  # version 6's second index of a sort
    for kind in (ASYNC_JOB, TEST_THING):
        store = SqliteJobStore(path, kind)
        await store.open()
        for resource_id, expected in E0E53DBC[kind.type].items():
            history = [
                {"version": r.version, "last_updated": r.last_updated, "owner": r.owner}
                | {"resource": r.resource}
                for r in await store.history(resource_id)
            ]
            assert history == expected, resource_id
        # Every sort both ways, from one index each (ties by id the sort's way).
        live = await store.search(JobQuery(sort=(SortKey("id"),), limit=100))
        newest_first = await store.search(
            JobQuery(sort=(SortKey("request_time", descending=True),), limit=100)
        )
        oldest_first = await store.search(JobQuery(sort=(SortKey("request_time"),), limit=100))
        assert [r.id for r in newest_first] == [r.id for r in reversed(oldest_first)]
        assert len(live) == len(newest_first) > 0
        await put_job(store, resourceType=kind.type, id="new", status="completed")
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for kind in ("asyncjob", "testthing"):
            tally = f"SELECT status, type, n FROM {kind}_tally WHERE n > 0"
            counted = f'SELECT status, type, count(*) FROM "{kind}" GROUP BY status, type'
            assert sorted(db.execute(tally)) == sorted(db.execute(counted))
    # The tables, indexes and triggers of a new file with both kinds: no "_desc" index left.
    for kind in (ASYNC_JOB, TEST_THING):
        new = SqliteJobStore(tmp_path / "new.sqlite3", kind)
        await new.open()
        await new.close()
    assert schema_names(path) == schema_names(tmp_path / "new.sqlite3")
    assert not [name for _, name, _ in schema_names(path) if name.endswith("_desc")]
