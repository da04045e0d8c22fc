"""The SQLite file: every search served by an index, a versioned schema."""

import sqlite3
from pathlib import Path

import pytest

from fhir_server.resources.asyncjob import ASYNC_JOB, SEARCH_PARAMETERS
from fhir_server.search.query import (
    Condition,
    Cursor,
    DateRange,
    HistoryQuery,
    JobQuery,
    Missing,
    SortKey,
    TokenMatch,
)
from fhir_server.storage import sqlite_schema
from fhir_server.storage.base import SchemaTooNew
from fhir_server.storage.sqlite import SqliteJobStore, search_sql, versions_sql
from fhir_server.storage.sqlite_schema import SCHEMA_VERSION

from ..conftest import put_job

DEFAULT_SORT = ASYNC_JOB.default_sort
SORT_COLUMNS = ASYNC_JOB.sort_columns
TOKEN_COLUMNS = ASYNC_JOB.token_columns


def plan(path: Path, query: JobQuery) -> list[str]:
    sql, params = search_sql(query)
    with sqlite3.connect(path) as db:
        return [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


DATE_COLUMNS = tuple(p.column for p in SEARCH_PARAMETERS if p.type == "date")
DEFAULT_ORDER = tuple(SortKey(column, descending) for column, descending in DEFAULT_SORT)


def every_search() -> list[JobQuery]:
    """No filter, or one filter of each kind: a token for one or several values, a token's
    :not and :missing, a date range, its ne, its :missing; by each sort key both ways;
    first page and a later one. Searches of one owner's jobs (every caller without the admin
    scope) in the default order too; another order of them sorts that owner's jobs only."""
    filters: list[tuple[tuple[Condition, ...], ...]] = [()]
    for column in TOKEN_COLUMNS:
        filters.append(((TokenMatch(column, frozenset({"x"})),),))
        filters.append(((TokenMatch(column, frozenset({"x", "y", "z"})),),))
        filters.append(((TokenMatch(column, frozenset({"x"}), negate=True),),))
        filters.append(((Missing(column, missing=True),),))
    for column in DATE_COLUMNS:
        filters.append(((DateRange(column, 1_000, 2_000),),))
        filters.append(((DateRange(column, None, 2_000),),))
        filters.append(((DateRange(column, 1_000, 2_000, negate=True),),))
        filters.append(((Missing(column, missing=False),),))
    queries = []
    for where in filters:
        for sort_column in SORT_COLUMNS:
            for descending in (False, True):
                sort = (SortKey(sort_column, descending),)
                later = Cursor((1 if "time" in sort_column else "v",), "id-1")
                owners = (None, "alice") if sort == DEFAULT_ORDER else (None,)
                for owner in owners:
                    queries.append(JobQuery(where=where, sort=sort, owner=owner))
                    queries.append(JobQuery(where=where, sort=sort, cursor=later, owner=owner))
    return queries


@pytest.fixture
async def data_file(tmp_path: Path) -> Path:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    await store.open()
    for _ in range(20):
        await put_job(store)
    await store.close()
    return store.path


@pytest.mark.parametrize("query", every_search(), ids=str)
async def test_search_is_served_by_an_index_in_sort_order(data_file: Path, query: JobQuery):
    steps = plan(data_file, query)
    assert not [s for s in steps if s == "SCAN asyncjob" or "TEMP B-TREE" in s], steps


@pytest.mark.parametrize(
    "cursor",
    [None, Cursor((1,), "id-1"), Cursor((1,), "id-1", forward=False)],
    ids=["first page", "next page", "previous page"],
)
async def test_one_owners_newest_jobs_are_read_from_the_owner_index(
    data_file: Path, cursor: Cursor | None
):
    # Every search without the admin scope: scanning all owners' jobs would cost ~160 ms
    # with 100,000 jobs of other owners, instead of well under 1 ms.
    steps = plan(data_file, JobQuery(owner="alice", cursor=cursor))
    assert any(s.startswith("SEARCH asyncjob USING INDEX ix_asyncjob_owner") for s in steps), steps
    assert not [s for s in steps if "TEMP B-TREE" in s], steps


async def test_opening_creates_a_file_at_the_current_schema_version(tmp_path: Path):
    store = SqliteJobStore(tmp_path / "data" / "jobs.sqlite3")
    await store.open()
    await store.close()
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_file_from_a_newer_schema_is_refused(data_file: Path):
    with sqlite3.connect(data_file) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    store = SqliteJobStore(data_file)
    with pytest.raises(SchemaTooNew, match="newer fhir-server"):
        await store.open()
    await store.close()


async def test_a_refused_file_is_left_as_it_was(data_file: Path):
    with sqlite3.connect(data_file) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    store = SqliteJobStore(data_file)
    with pytest.raises(SchemaTooNew):
        await store.open()
    await store.close()
    with sqlite3.connect(data_file) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert db.execute("SELECT count(*) FROM asyncjob").fetchone()[0] == 20


async def test_an_older_file_is_migrated_on_open(data_file: Path, monkeypatch: pytest.MonkeyPatch):
    def add_note(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE asyncjob ADD COLUMN note TEXT NOT NULL DEFAULT 'migrated'")

    monkeypatch.setattr(sqlite_schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(sqlite_schema.MIGRATIONS, SCHEMA_VERSION, add_note)
    store = SqliteJobStore(data_file)
    await store.open()
    await store.close()
    with sqlite3.connect(data_file) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert {row[0] for row in db.execute("SELECT note FROM asyncjob")} == {"migrated"}


def history_plan(path: Path, query: HistoryQuery) -> list[str]:
    sql, params = versions_sql(query, "SELECT job, version, resource FROM asyncjob_version")
    with sqlite3.connect(path) as db:
        return [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


HISTORY_CURSORS = {
    "first page": None,
    "next page": Cursor(("2026-01-01T00:00:00.000Z", "id-1", 2), "id-1"),
    "previous page": Cursor(("2026-01-01T00:00:00.000Z", "id-1", 2), "id-1", forward=False),
}


@pytest.mark.parametrize("owner", [None, "alice"], ids=["admin", "one owner"])
@pytest.mark.parametrize("since", [None, "2025-01-01T00:00:00.000Z"], ids=["all", "_since"])
@pytest.mark.parametrize("cursor", HISTORY_CURSORS.values(), ids=HISTORY_CURSORS.keys())
async def test_the_type_history_is_read_from_an_index_by_time(
    data_file: Path, owner: str | None, since: str | None, cursor: Cursor | None
):
    # With 100,000 jobs of 5 versions each, a page must not read (or sort) every version.
    steps = history_plan(data_file, HistoryQuery(since=since, cursor=cursor, owner=owner))
    index = "asyncjob_version_by_owner" if owner else "asyncjob_version_by_time"
    assert any(f"USING INDEX {index}" in s for s in steps), steps
    assert not [s for s in steps if "TEMP B-TREE" in s], steps
