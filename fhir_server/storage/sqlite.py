"""JobStore on SQLite: one file, WAL journal, every write on disk before it is acknowledged.

Reads run synchronously on the event loop over their own connection: a read by id with 20,000
jobs took 10 µs that way against 110-160 µs through a thread (asyncio.to_thread or a
dedicated executor); with 100,000 jobs 16 µs, a page of 20 ~80 µs (docs/decisions/0002).
Writes fsync (about 1.6 ms), so they run on one writer thread with a connection of their
own; several processes share the file through SQLite's locking (BEGIN IMMEDIATE, busy timeout).
"""

import asyncio
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import orjson

from ..resources.asyncjob import ASYNC_JOB
from ..resources.instants import now_instant, parse_instant_ms
from ..search.query import (
    MISSING_DATE,
    MISSING_TOKEN,
    Condition,
    Cursor,
    DateRange,
    JobQuery,
    Missing,
    SortKey,
    TokenMatch,
    cursor_position,
    full_sort,
)
from .base import JobRecord, StoreUnavailable, VersionConflict, index_values, stamp

SCHEMA_VERSION = 1
FILE_NAME = "fhir-server.sqlite3"
BUSY_TIMEOUT_MS = 10_000
READER_CACHE_KIB = 64 * 1024  # the read connection's page cache (SQLite's default is 2 MiB)
T = TypeVar("T")

# Index columns after the id: one per search parameter, as the parameter list defines them.
SEARCH_PARAMETERS = ASYNC_JOB.search_parameters
TOKEN_COLUMNS = ASYNC_JOB.token_columns
SORT_COLUMNS = ASYNC_JOB.sort_columns
INDEX_COLUMNS = tuple(p.column for p in SEARCH_PARAMETERS if p.column != "id")
_COLUMN_TYPES = {p.column: "INTEGER" if p.type == "date" else "TEXT" for p in SEARCH_PARAMETERS}


class SchemaTooNew(Exception):
    """The data file was written by a newer fhir-server than this one."""


def _create_schema(db: sqlite3.Connection) -> None:
    columns = ", ".join(f"{c} {_COLUMN_TYPES[c]} NOT NULL" for c in INDEX_COLUMNS)
    db.execute(
        "CREATE TABLE job (id TEXT PRIMARY KEY, version INTEGER NOT NULL, owner TEXT, "
        f"resource BLOB NOT NULL, {columns})"
    )
    _create_tally(db)
    db.execute(
        "CREATE TABLE job_version (job TEXT NOT NULL, version INTEGER NOT NULL, "
        "last_updated TEXT NOT NULL, owner TEXT, resource BLOB, PRIMARY KEY (job, version)) "
        "WITHOUT ROWID"
    )


def _create_tally(db: sqlite3.Connection) -> None:
    """job_tally: live jobs per combination of token values, kept by triggers, so counting a
    token search reads a few rows instead of every match (a search answers with its total)."""
    tokens = ", ".join(TOKEN_COLUMNS)
    key = ", ".join(f"{c} TEXT NOT NULL" for c in TOKEN_COLUMNS)
    db.execute(f"CREATE TABLE job_tally ({key}, n INTEGER NOT NULL, PRIMARY KEY ({tokens}))")

    def same(row: str) -> str:
        return " AND ".join(f"{c} = {row}.{c}" for c in TOKEN_COLUMNS)

    add = (
        f"INSERT INTO job_tally ({tokens}, n) VALUES "
        f"({', '.join('NEW.' + c for c in TOKEN_COLUMNS)}, 1) "
        f"ON CONFLICT ({tokens}) DO UPDATE SET n = n + 1;"
    )
    remove = f"UPDATE job_tally SET n = n - 1 WHERE {same('OLD')};"
    db.execute(f"CREATE TRIGGER job_tally_insert AFTER INSERT ON job BEGIN {add} END")
    db.execute(f"CREATE TRIGGER job_tally_delete AFTER DELETE ON job BEGIN {remove} END")
    db.execute(
        f"CREATE TRIGGER job_tally_update AFTER UPDATE OF {tokens} ON job BEGIN {remove} {add} END"
    )


# MIGRATIONS[n] brings a file from schema version n to n + 1; version 0 is an empty file.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {0: _create_schema}


def index_keys() -> list[tuple[tuple[str, bool], ...]]:
    """(column, descending) per index: every sort column in both directions, alone and behind
    each token filter, and one owner's newest jobs; each ending in the unique id so the
    tie-breaker is served too."""
    keys: list[tuple[tuple[str, bool], ...]] = []
    for token in (None, *TOKEN_COLUMNS):
        for column in SORT_COLUMNS:
            for descending in (False, True):
                key: list[tuple[str, bool]] = [] if token is None else [(token, False)]
                if column not in (token, "id"):
                    key.append((column, descending))
                key.append(("id", False))
                if len(key) > 1 and tuple(key) not in keys:
                    keys.append(tuple(key))
    # A caller without the admin scope always searches its own jobs: newest first by default
    # (another sort of one owner's jobs sorts only that owner's jobs).
    keys.append((("owner", False), ("last_updated", True), ("id", False)))
    return keys


def index_name(key: tuple[tuple[str, bool], ...]) -> str:
    return "ix_job_" + "_".join(c + ("_desc" if d else "") for c, d in key if c != "id")


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, cached_statements=512)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA synchronous = FULL")
    return db


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE takes the write lock up front, so two writers never deadlock."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class SqliteJobStore:
    """Live jobs in `job` (one row each, search columns beside the JSON), every version in
    `job_version`, as the MongoDB store keeps them."""

    # Reads that run on the event loop without awaiting (see the module docstring): no
    # deadline can interrupt them, so with_deadline leaves them untimed.
    SYNCHRONOUS_METHODS = frozenset({"ping", "get", "get_version", "history", "search", "count"})

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._writer = await self._write(lambda: _connect(self.path))
        await self._write(self._prepare)
        self._reader = _connect(self.path)
        self._reader.execute("PRAGMA query_only = 1")
        # Random reads by id over a large store otherwise fetch most B-tree pages from the OS.
        self._reader.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")

    def _prepare(self) -> None:
        db = self._write_db
        db.execute("PRAGMA journal_mode = WAL")
        with _transaction(db):
            found = db.execute("PRAGMA user_version").fetchone()[0]
            if found > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"{self.path} was written by a newer fhir-server (schema version {found}; "
                    f"this one reads up to {SCHEMA_VERSION}). Upgrade fhir-server, or use "
                    "another --data-dir."
                )
            for version in range(found, SCHEMA_VERSION):
                MIGRATIONS[version](db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            for key in index_keys():
                terms = ", ".join(c + (" DESC" if d else "") for c, d in key)
                db.execute(f"CREATE INDEX IF NOT EXISTS {index_name(key)} ON job ({terms})")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._writer is not None:
            writer = self._writer
            await self._write(writer.close)
            self._writer = None
        if self._thread is not None:
            self._thread.shutdown()
            self._thread = None

    async def ping(self) -> None:
        self._read("SELECT 1")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """All rows of one query on the reader connection (its statements stay prepared)."""
        if self._reader is None:
            raise StoreUnavailable(f"{self.path} is not open")
        try:
            return self._reader.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    @property
    def _write_db(self) -> sqlite3.Connection:
        if self._writer is None:
            raise StoreUnavailable(f"{self.path} is not open")
        return self._writer

    async def _write(self, work: Callable[[], T]) -> T:
        if self._thread is None:
            raise StoreUnavailable(f"{self.path} is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, work)
        except sqlite3.OperationalError as exc:
            # "database is locked" after the busy timeout: the caller may retry.
            raise StoreUnavailable(str(exc)) from exc

    async def get(self, job_id: str) -> JobRecord | None:
        rows = self._read(_LIVE_JOB, (job_id,))
        if rows:
            return _record(rows[0], _LIVE_JOB_INDEXED)
        rows = self._read(_NEWEST_VERSION, (job_id,))
        return _version_record(rows[0]) if rows else None

    async def get_version(self, job_id: str, version: int) -> JobRecord | None:
        rows = self._read(
            "SELECT job, version, last_updated, owner, resource FROM job_version "
            "WHERE job = ? AND version = ?",
            (job_id, version),
        )
        return _version_record(rows[0]) if rows else None

    async def history(self, job_id: str) -> list[JobRecord]:
        rows = self._read(
            "SELECT job, version, last_updated, owner, resource FROM job_version "
            "WHERE job = ? ORDER BY version DESC",
            (job_id,),
        )
        return [_version_record(row) for row in rows]

    async def search(self, query: JobQuery) -> list[JobRecord]:
        sql, params = search_sql(query)
        indexed = _sort_positions(query.sort)
        return [_record(row, indexed) for row in self._read(sql, params)]

    async def count(self, query: JobQuery) -> int:
        sql, params = count_sql(query)
        return int(self._read(sql, params)[0][0])

    async def save(
        self, resource: dict[str, Any], *, expected_version: int, owner: str | None = None
    ) -> JobRecord:
        job_id = resource["id"]
        version = expected_version + 1
        stamped = stamp(resource, version, now_instant())
        values = index_values(stamped)
        blob = orjson.dumps(stamped)
        last_updated = stamped["meta"]["lastUpdated"]
        names = ", ".join(INDEX_COLUMNS)
        marks = ", ".join("?" for _ in INDEX_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in ("version", "owner", "resource"))
        upsert = (
            f"INSERT INTO job (id, version, owner, resource, {names}) "
            f"VALUES (?, ?, ?, ?, {marks}) ON CONFLICT (id) DO UPDATE SET {updates}, "
            + ", ".join(f"{c} = excluded.{c}" for c in INDEX_COLUMNS)
        )
        row = (job_id, version, owner, blob, *(values[c] for c in INDEX_COLUMNS))

        def write() -> None:
            db = self._write_db
            with _transaction(db):
                newest = _newest_version_number(db, job_id)
                if newest != expected_version:
                    raise VersionConflict(job_id, expected_version, newest)
                db.execute(upsert, row)
                _append_version(db, job_id, version, last_updated, owner, blob)

        await self._write(write)
        return JobRecord(job_id, version, last_updated, stamped, owner)

    async def delete(self, job_id: str, *, expected_version: int) -> JobRecord:
        last_updated = now_instant()

        def write() -> str | None:
            db = self._write_db
            with _transaction(db):
                live = db.execute(
                    "SELECT owner FROM job WHERE id = ? AND version = ?", (job_id, expected_version)
                ).fetchone()
                if live is None:
                    newest = _newest_version_number(db, job_id)
                    raise VersionConflict(job_id, expected_version, newest or None)
                db.execute("DELETE FROM job WHERE id = ?", (job_id,))
                _append_version(db, job_id, expected_version + 1, last_updated, live[0], None)
                return str(live[0]) if live[0] is not None else None

        owner = await self._write(write)
        return JobRecord(job_id, expected_version + 1, last_updated, None, owner)

    async def purge(self, *, before: str, statuses: frozenset[str]) -> int:
        cutoff = parse_instant_ms(before)
        marks = ", ".join("?" for _ in statuses)

        def write() -> int:
            db = self._write_db
            with _transaction(db):
                live = [
                    row[0]
                    for row in db.execute(
                        f"SELECT id FROM job WHERE status IN ({marks}) AND last_updated < ?",
                        (*sorted(statuses), cutoff),
                    )
                ]
                deleted = [
                    job
                    for job, last_updated in db.execute(_DELETED_JOBS)
                    if parse_instant_ms(last_updated) < cutoff
                ]
                db.executemany("DELETE FROM job WHERE id = ?", [(job,) for job in live])
                gone = [(job,) for job in (*live, *deleted)]
                db.executemany("DELETE FROM job_version WHERE job = ?", gone)
                return len(gone)

        return await self._write(write)


# Jobs whose newest version is a deletion: (id, when it was deleted).
_DELETED_JOBS = (
    "SELECT v.job, v.last_updated FROM job_version v WHERE v.resource IS NULL "
    "AND v.version = (SELECT max(version) FROM job_version WHERE job = v.job) "
    "AND v.job NOT IN (SELECT id FROM job)"
)
_NEWEST_VERSION = (
    "SELECT job, version, last_updated, owner, resource FROM job_version "
    "WHERE job = ? ORDER BY version DESC LIMIT 1"
)


def _newest_version_number(db: sqlite3.Connection, job_id: str) -> int:
    row = db.execute(
        "SELECT version FROM job_version WHERE job = ? ORDER BY version DESC LIMIT 1", (job_id,)
    ).fetchone()
    return 0 if row is None else int(row[0])


def _append_version(
    db: sqlite3.Connection,
    job_id: str,
    version: int,
    last_updated: str,
    owner: str | None,
    blob: bytes | None,
) -> None:
    db.execute(
        "INSERT INTO job_version (job, version, last_updated, owner, resource) "
        "VALUES (?, ?, ?, ?, ?)",
        (job_id, version, last_updated, owner, blob),
    )


# A read by id also takes lastUpdated's index value: Last-Modified without parsing the JSON.
_LIVE_JOB_INDEXED = {"last_updated": 4}
_LIVE_JOB = "SELECT id, version, owner, resource, last_updated FROM job WHERE id = ?"


def _record(row: tuple[Any, ...], indexed: Mapping[str, int]) -> JobRecord:
    """A job row: id, version, owner, resource, then index columns at the `indexed` places."""
    job_id, version, owner, blob = row[:4]
    return JobRecord(job_id, version, None, None, owner, stored=blob, indexed=(indexed, row))


def _version_record(row: tuple[Any, ...]) -> JobRecord:
    job_id, version, last_updated, owner, blob = row
    return JobRecord(job_id, version, last_updated, None, owner, stored=blob)


# A query is immutable and clients repeat theirs (pollers, the same page links): the SQL
# for one is built once. Values are bound, so a cached statement holds no formatted input.
_SQL_CACHE_SIZE = 1024


@lru_cache(maxsize=_SQL_CACHE_SIZE)
def count_sql(query: JobQuery) -> tuple[str, tuple[Any, ...]]:
    """The SELECT counting query's matches: from job_tally when it can answer."""
    where, params = _where(query)
    table = "job_tally" if _tally_answers(query) else "job"
    counted = "coalesce(sum(n), 0)" if table == "job_tally" else "count(*)"
    return f"SELECT {counted} FROM {table}{where}", tuple(params)


@lru_cache(maxsize=_SQL_CACHE_SIZE)
def search_sql(query: JobQuery) -> tuple[str, tuple[Any, ...]]:
    """The SELECT for one page of query; values are always bound, never formatted in.

    A token matching one of several values is split into one SELECT per value, merged in
    sort order (UNION ALL): each reads its index in order, so nothing is sorted afterwards.
    """
    keys = full_sort(query.sort)
    forward = query.cursor is None or query.cursor.forward
    parts = _disjoint_parts(query)
    # The sort columns come with each row: a merge orders by them, and the page's cursor
    # links are made of them (without them every resource on the page would be parsed).
    columns = ", ".join(["id", "version", "owner", "resource", *sort_columns(query.sort)])
    selects: list[str] = []
    params: list[Any] = []
    for part in parts:
        where, part_params = _where(part, ordered=True)
        if part.cursor is not None:
            keyset, keyset_params = _keyset(part, keys, part.cursor)
            where = f"{where} AND {keyset}" if where else f" WHERE {keyset}"
            part_params += keyset_params
        selects.append(f"SELECT {columns} FROM job{where}")
        params += part_params
    order = ", ".join(f"{k.column} {'DESC' if k.descending == forward else 'ASC'}" for k in keys)
    sql = f"{' UNION ALL '.join(selects)} ORDER BY {order} LIMIT ?"
    params.append(query.limit)
    if query.offset:
        sql += " OFFSET ?"
        params.append(query.offset)
    return sql, tuple(params)


MAX_MERGED_VALUES = 16


def _disjoint_parts(query: JobQuery) -> list[JobQuery]:
    """query, or one query per value of its first token matching several values."""
    for i, any_of in enumerate(query.where):
        match = any_of[0]
        if (
            len(any_of) == 1
            and isinstance(match, TokenMatch)
            and not match.negate
            and match.column in TOKEN_COLUMNS
            and 1 < len(match.values) <= MAX_MERGED_VALUES
        ):
            return [
                replace(
                    query,
                    where=(
                        *query.where[:i],
                        (TokenMatch(match.column, frozenset({value})),),
                        *query.where[i + 1 :],
                    ),
                )
                for value in sorted(match.values)
            ]
    return [query]


@lru_cache(maxsize=64)
def sort_columns(sort: tuple[SortKey, ...]) -> tuple[str, ...]:
    """The index columns a page's rows carry after the job's own: its sort keys but the id."""
    return tuple(k.column for k in full_sort(sort) if k.column != "id")


@lru_cache(maxsize=64)
def _sort_positions(sort: tuple[SortKey, ...]) -> dict[str, int]:
    """Where a page's row holds each index column (the id is the row's first value)."""
    return {"id": 0} | {column: 4 + i for i, column in enumerate(sort_columns(sort))}


def _tally_answers(query: JobQuery) -> bool:
    """Whether job_tally can count query: all it asks for is one of some values per token."""
    return query.owner is None and all(
        len(any_of) == 1
        and isinstance(any_of[0], TokenMatch)
        and not any_of[0].negate
        and any_of[0].column in TOKEN_COLUMNS
        for any_of in query.where
    )


def _where(query: JobQuery, ordered: bool = False) -> tuple[str, list[Any]]:
    """The WHERE clause; `ordered` (a page in sort order) keeps SQLite on the sort's index:
    a filter on another date column is then checked row by row (unary +), never used to pick
    an index whose order would need a temporary B-tree to sort every match."""
    clauses: list[str] = []
    params: list[Any] = []
    leading = full_sort(query.sort)[0].column if ordered else None
    for any_of in query.where:
        parts = [_condition(c, params, _may_use_index(c, leading)) for c in any_of]
        clauses.append(parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")")
    if query.owner is not None:
        clauses.append("owner = ?")
        params.append(query.owner)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _may_use_index(condition: Condition, leading: str | None) -> bool:
    # token filters lead their own indexes; an _id list is a few primary-key lookups
    return leading is None or condition.column in (leading, "id", *TOKEN_COLUMNS)


def _condition(condition: Condition, params: list[Any], indexed: bool = True) -> str:
    name = condition.column if indexed else f"+{condition.column}"
    if isinstance(condition, TokenMatch):
        values = sorted(condition.values)
        params += values
        if len(values) == 1:
            return f"{name} {'!=' if condition.negate else '='} ?"
        marks = ", ".join("?" for _ in values)
        return f"{name} {'NOT IN' if condition.negate else 'IN'} ({marks})"
    if isinstance(condition, Missing):
        params.append(MISSING_TOKEN if condition.column in TOKEN_COLUMNS else MISSING_DATE)
        return f"{name} {'=' if condition.missing else '!='} ?"
    return _date_condition(name, condition, params)


def _date_condition(name: str, condition: DateRange, params: list[Any]) -> str:
    if condition.negate:
        outside: list[str] = []
        if condition.lower is not None:
            outside.append(f"({name} > ? AND {name} < ?)")
            params += [MISSING_DATE, condition.lower]
        if condition.upper is not None:
            outside.append(f"{name} >= ?")
            params.append(condition.upper)
        return "(" + " OR ".join(outside) + ")" if outside else "0"
    if condition.lower is not None:
        bounds = [f"{name} >= ?"]
        params.append(condition.lower)
    else:
        bounds = [f"{name} > ?"]
        params.append(MISSING_DATE)
    if condition.upper is not None:
        bounds.append(f"{name} < ?")
        params.append(condition.upper)
    return " AND ".join(bounds)


def _keyset(query: JobQuery, keys: tuple[SortKey, ...], cursor: Cursor) -> tuple[str, list[Any]]:
    """Rows strictly after (forward) or before (backward) the cursor in the sort order.

    One OR branch per key (equal on the keys before it, beyond it on this one), plus a bound
    on the first key alone so SQLite seeks into the index instead of scanning to the cursor.
    """
    values = cursor_position(query.sort, cursor)
    params: list[Any] = []
    branches: list[str] = []
    for i, key in enumerate(keys):
        terms = [f"{k.column} = ?" for k in keys[:i]]
        params += values[:i]
        less = key.descending == cursor.forward
        terms.append(f"{key.column} {'<' if less else '>'} ?")
        params.append(values[i])
        branches.append("(" + " AND ".join(terms) + ")")
    first = keys[0]
    bound = f"{first.column} {'<=' if first.descending == cursor.forward else '>='} ?"
    return f"{bound} AND ({' OR '.join(branches)})", [values[0], *params]
