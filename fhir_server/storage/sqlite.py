"""JobStore on SQLite: one file, WAL journal, every write on disk before it is acknowledged.

Reads run synchronously on the event loop over their own connection: a read by id with 20,000
jobs took 10 µs that way against 110-160 µs through a thread (asyncio.to_thread or a
dedicated executor); with 100,000 jobs 16 µs, a page of 20 ~80 µs (docs/decisions/0002).
Writes fsync (about 1.6 ms), so they run on one writer thread with a connection of their
own; several processes share the file through SQLite's locking (BEGIN IMMEDIATE, busy timeout).
"""

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from ..config import DEFAULT_MAX_RESOURCE_BYTES
from ..resources.asyncjob import ASYNC_JOB
from ..resources.instants import now_instant, parse_instant_ms
from ..resources.kinds import ResourceKind
from ..search.paging import ReadBudget
from ..search.query import (
    MISSING_DATE,
    MISSING_TOKEN,
    Condition,
    Cursor,
    DateRange,
    HistoryQuery,
    JobQuery,
    Missing,
    SortKey,
    TokenMatch,
    cursor_position,
    full_sort,
)
from ..secrets_file import existing_private_file, private_dir, private_file
from .base import (
    Change,
    JobRecord,
    StoreUnavailable,
    Usage,
    VersionConflict,
    Write,
    index_values,
    stamp,
    stored_json,
)
from .schema import token_columns
from .sqlite_schema import (
    Tables,
    defer_upkeep,
    missing_indexes,
    prepare,
    restore_tallies,
)

# AsyncJob's, which the SQL builders default to.
TOKEN_COLUMNS = token_columns(ASYNC_JOB.search_parameters)
TABLES = Tables.of(ASYNC_JOB)

FILE_NAME = "fhir-server.sqlite3"
BUSY_TIMEOUT_MS = 10_000
READER_MMAP_BYTES = 1 << 30  # the read connection maps up to 1 GiB of the file
READER_CACHE_KIB = 64 * 1024  # the read connection's page cache (SQLite's default is 2 MiB)
# Rows a budgeted page's first fetch reads, before their sizes are known; a page of no more
# rows is read at once (take_page still ends it at the budget).
FIRST_BATCH = 24
WRITER_CACHE_KIB = 64 * 1024  # the write connection's: a save_many's pages fit
INDEX_BUILD_THREADS = 2  # the sorter's helper threads while restore_upkeep builds indexes
INDEX_BUILD_CACHE_KIB = 512  # the write connection's cache meanwhile
MAX_IDS_PER_QUERY = 1000  # bound variables of one `IN (...)` (SQLite allows 32,766)
# A bulk load of fewer resources keeps the indexes up to date row by row: building all of
# them again after it would cost more than it saves.
DEFER_UPKEEP_FROM = 10_000
T = TypeVar("T")


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
        if db.in_transaction:  # SQLite ends it itself after some errors (e.g. disk full)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class SqliteJobStore:
    """One kind's resources: the live ones in its table (`asyncjob` for AsyncJob: one row each,
    search columns beside the JSON), every version in its `_version` table (sqlite_schema.py),
    as the MongoDB store keeps them. Stores of other kinds may share the file."""

    # Reads that run on the event loop without awaiting (see the module docstring): no
    # deadline can interrupt them, so with_deadline leaves them untimed.
    SYNCHRONOUS_METHODS = frozenset(
        {
            "ping",
            "get",
            "get_version",
            "history",
            "versions",
            "search",
            "count",
            "usage",
            "changes",
            "feed_position",
        }
    )

    def __init__(
        self,
        path: Path,
        kind: ResourceKind = ASYNC_JOB,
        *,
        max_resource_bytes: int = DEFAULT_MAX_RESOURCE_BYTES,
        reader_mmap_bytes: int = READER_MMAP_BYTES,
    ) -> None:
        self.path = Path(path)
        # A bulk load reads each batch's ids once: mapping the file would only make the
        # pages it touched count in its memory (RSS), growing with the file.
        self.reader_mmap_bytes = reader_mmap_bytes
        self.kind = kind
        self.max_resource_bytes = max_resource_bytes
        # The search parameters this store indexes (a column each); opening migrates tables
        # built for others (sqlite_schema.py).
        self.parameters = kind.search_parameters
        self._tokens = token_columns(self.parameters)
        self._columns = tuple(p.column for p in self.parameters if p.column != "id")
        # A live row's columns, in the order of _live_row's values.
        live_columns = ("id", "version", "owner", "resource", *self._columns)
        self._live_columns = ", ".join(live_columns)
        self._live_marks = ", ".join("?" for _ in live_columns)
        tables = self._tables = Tables.of(kind)
        self._upsert = (
            f"INSERT INTO {tables.live} ({self._live_columns}) VALUES ({self._live_marks}) "
            "ON CONFLICT (id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in live_columns[1:])
        )
        # The reads by id, made once: they take microseconds. A caller that sees only its own
        # jobs passes its owner, and the query itself leaves out anyone else's: another owner's
        # id and an unknown one then take the same statement and the same index lookups,
        # reading no row (sqlite_schema.py has the indexes), so their times match.
        live, versions = tables.live, tables.versions
        columns = f"SELECT {VERSION_COLUMNS} FROM {versions}"
        self._all_versions = columns
        self._version = f"{columns} WHERE job = ?1 AND version = ?2"
        self._history = f"{columns} WHERE job = ?1 ORDER BY version DESC"
        # The newest version's owner decides for every version. SQLite works out a LIMIT
        # before it reads any row: with another owner's job it stops after one index lookup,
        # as it does with an unknown id.
        newest_owner = (
            f"SELECT owner FROM {versions} INDEXED BY {tables.versions_owner} "
            "WHERE job = ?1 ORDER BY version DESC LIMIT 1"
        )

        def owners_only(rows: int, owner: str) -> str:
            return f"LIMIT CASE ({newest_owner}) WHEN {owner} THEN {rows} ELSE 0 END"

        self._version_owned = f"{self._version} {owners_only(1, '?3')}"
        self._history_owned = f"{self._history} {owners_only(-1, '?2')}"
        # The live row, else the newest version (a deletion): its last column tells which.
        live_row = f"SELECT id, version, owner, resource, last_updated, 1 FROM {live}"
        newest_version = (
            f"SELECT job, version, owner, resource, last_updated, 0 FROM {versions} "
            "WHERE job = ?1 ORDER BY version DESC"
        )
        self._newest = (
            f"{live_row} WHERE id = ?1 UNION ALL SELECT * FROM ({newest_version} LIMIT 1) LIMIT 1"
        )
        self._newest_owned = (
            f"{live_row} INDEXED BY {tables.live_owner} WHERE id = ?1 AND owner = ?2 "
            f"UNION ALL SELECT * FROM ({newest_version} {owners_only(1, '?2')}) LIMIT 1"
        )
        self._usage = f"SELECT jobs, bytes FROM {tables.owners} WHERE owner = ?"
        # The change feed: a row per version written or job purged, in commit order (writes
        # are serialized by BEGIN IMMEDIATE); AUTOINCREMENT never gives a position twice,
        # even after the newest rows were trimmed. A deletion's last live version comes
        # along (for criteria), through the versions' (job, version) key.
        feed = self._feed = feed_table(tables)
        self._changes = (
            f"SELECT c.position, c.job, c.version, c.owner, c.deleted, c.purged, v.resource, "
            f"p.resource FROM {feed} c "
            f"LEFT JOIN {versions} v ON v.job = c.job AND v.version = c.version "
            f"LEFT JOIN {versions} p ON c.deleted AND p.job = c.job AND p.version = c.version - 1 "
            "WHERE c.position > ? ORDER BY c.position LIMIT ?"
        )
        self._feed_position = f"SELECT seq FROM sqlite_sequence WHERE name = '{feed}'"
        # The range read is the changes since the instant: few, by the index on `at`.
        self._position_before = f"SELECT min(position) - 1 FROM {feed} WHERE at >= ?"
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        self._make_private()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._writer = await self._write(lambda: _connect(self.path))
        await self._write(self._prepare)
        # A save_many of a thousand versions dirties more pages than SQLite's default 2 MiB
        # cache holds: they would be spilled to the WAL mid-transaction (about 20 % slower).
        await self._write(
            lambda: self._write_db.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        )
        self._open_reader()

    def _open_reader(self) -> None:
        self._reader = _connect(self.path)
        self._reader.execute("PRAGMA query_only = 1")
        # Random reads by id over a large store otherwise fetch most B-tree pages from the OS.
        self._reader.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
        # Pages read through a memory map, not one pread() system call each: address space,
        # not memory (the OS's page cache backs it, as it backs pread).
        self._reader.execute(f"PRAGMA mmap_size = {int(self.reader_mmap_bytes)}")

    def _make_private(self) -> None:
        """The file holds every owner's jobs: readable by this user only, in a dir no one
        else writes, never opened through a symbolic link (UnsafeFile). SQLite gives its
        -wal and -shm files the database file's mode and owner."""
        private_dir(self.path.parent)
        private_file(self.path)
        for suffix in ("-wal", "-shm"):
            existing_private_file(self.path.with_name(self.path.name + suffix))

    def _prepare(self) -> None:
        db = self._write_db
        _wal_on(db)
        with _transaction(db):
            prepare(db, self.path, self.kind)
            # Not a numbered schema step: a table the server makes if absent, whose loss
            # costs nothing but notifications already sent.
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {self._feed} (position INTEGER PRIMARY KEY "
                "AUTOINCREMENT, job TEXT NOT NULL, version INTEGER NOT NULL, owner TEXT, "
                "deleted INTEGER NOT NULL, purged INTEGER NOT NULL, at INTEGER NOT NULL)"
            )
            db.execute(f"CREATE INDEX IF NOT EXISTS {self._feed}_at ON {self._feed} (at)")

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

    async def get(self, job_id: str, *, owner: str | None = None) -> JobRecord | None:
        if owner is None:
            rows = self._read(self._newest, (job_id,))
        else:
            rows = self._read(self._newest_owned, (job_id, owner))
        if not rows:
            return None
        row = rows[0]
        if row[5]:  # the live row
            return _record(row, _LIVE_JOB_INDEXED)
        return JobRecord(row[0], row[1], row[4], None, row[2], stored=row[3])

    async def get_version(
        self, job_id: str, version: int, *, owner: str | None = None
    ) -> JobRecord | None:
        if owner is None:
            rows = self._read(self._version, (job_id, version))
        else:
            rows = self._read(self._version_owned, (job_id, version, owner))
        return _version_record(rows[0]) if rows else None

    async def history(self, job_id: str, *, owner: str | None = None) -> list[JobRecord]:
        if owner is None:
            rows = self._read(self._history, (job_id,))
        else:
            rows = self._read(self._history_owned, (job_id, owner))
        return [_version_record(row) for row in rows]

    async def versions(self, query: HistoryQuery) -> list[JobRecord]:
        sql, params = versions_sql(query, self._all_versions)
        if query.max_bytes is None or query.limit <= FIRST_BATCH:
            rows = self._read(sql, params)  # as many as a budgeted read's first fetch
        else:
            rows = self._read_within(sql, params, ReadBudget(query.max_bytes), _VERSION_RESOURCE)
        return [_version_record(row) for row in rows]

    async def search(self, query: JobQuery) -> list[JobRecord]:
        sql, params = search_sql(query, self._tokens, self._tables)
        indexed = _sort_positions(query.sort)
        if query.max_bytes is None or query.limit <= FIRST_BATCH:
            rows = self._read(sql, params)  # as many as a budgeted read's first fetch
        else:
            rows = self._read_within(sql, params, ReadBudget(query.max_bytes), _LIVE_RESOURCE)
        return [_record(row, indexed) for row in rows]

    def _read_within(
        self, sql: str, params: Sequence[Any], budget: ReadBudget, resource: int
    ) -> list[Any]:
        """The rows of a page until the budget stops the reading: fetched a few at a time
        (then as many as the budget has room for, by the largest row so far), so a page of
        large resources never holds many more of them than it shows. `resource`: the
        column of the stored JSON (NULL, 0 bytes, for a deletion)."""
        if self._reader is None:
            raise StoreUnavailable(f"{self.path} is not open")
        rows: list[Any] = []
        try:
            cursor = self._reader.execute(sql, params)
            more = cursor.fetchmany(FIRST_BATCH)
            while more:
                sizes = [len(row[resource] or b"") for row in more]
                keep = budget.cut(sizes)
                if keep is not None:
                    rows += more[:keep]
                    break
                rows += more
                more = cursor.fetchmany(max(FIRST_BATCH, budget.left // max(1, max(sizes))))
            cursor.close()  # ends the read (an unfinished statement would keep its snapshot)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return rows

    async def count(self, query: JobQuery) -> int:
        sql, params = count_sql(query, self._tokens, self._tables)
        return int(self._read(sql, params)[0][0])

    async def usage(self, owner: str) -> Usage:
        rows = self._read(self._usage, (owner,))
        return Usage(int(rows[0][0]), int(rows[0][1])) if rows else Usage(0, 0)

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """The newest version of each id ever used, as get has it: a few queries per thousand
        ids, not one each."""
        found: dict[str, JobRecord] = {}
        live, versions = self._tables.live, self._tables.versions
        for ids, marks in _id_chunks(job_ids):
            for row in self._read(
                f"SELECT id, version, owner, resource FROM {live} WHERE id IN ({marks})", ids
            ):
                found[row[0]] = JobRecord(row[0], row[1], None, None, row[2], stored=row[3])
            # Ids without a live row: deleted (their newest version is the deletion), or never
            # used. max() makes SQLite read the other columns from that version's row.
            rest = [i for i in ids if i not in found]
            if not rest:
                continue
            marks = ", ".join("?" for _ in rest)
            for job, version, last_updated, owner in self._read(
                f"SELECT job, max(version), last_updated, owner FROM {versions} "
                f"WHERE job IN ({marks}) GROUP BY job",
                rest,
            ):
                found[job] = JobRecord(job, version, last_updated, None, owner)
        return found

    async def defer_upkeep(self, incoming: int) -> bool:
        """Before loading `incoming` resources: into an empty or small store (no more live
        resources than that, and at least DEFER_UPKEEP_FROM of them), drop the search indexes
        and tally triggers (sqlite_schema.defer_upkeep), to be made again once at the end
        (restore_upkeep; or on the next open, after a crash). Whether it did."""
        if incoming < DEFER_UPKEEP_FROM:
            return False
        live = self._tables.live
        (count,) = self._read(
            f"SELECT count(*) FROM (SELECT 1 FROM {live} LIMIT ?)", (incoming + 1,)
        )[0]
        if count > incoming:
            return False

        def drop() -> None:
            db = self._write_db
            with _transaction(db):
                defer_upkeep(db, self._tables)
            _journal_alone(db)

        # The reader's open file would keep WAL's lock: closed for the switch, then reopened.
        if self._reader is not None:
            self._reader.close()
        try:
            await self._write(drop)
        finally:
            self._open_reader()
        return True

    async def restore_upkeep(self) -> None:
        """The tallies counted and their triggers back (one transaction), then each missing
        index built, each in a transaction of its own: a writer waits for one at most."""

        def restore() -> None:
            db = self._write_db
            with _transaction(db):
                restore_tallies(db, self._tables, self._tokens)
                statements = missing_indexes(db, self._tables, self.parameters)
            # SQLite's sorter sorts in a helper thread only what spills out of the page
            # cache: a small cache lets each build sort in parts on both cores (measured:
            # about a fifth faster), the large one is back after.
            db.execute(f"PRAGMA threads = {INDEX_BUILD_THREADS}")
            db.execute(f"PRAGMA cache_size = -{INDEX_BUILD_CACHE_KIB}")
            try:
                for statement in statements:
                    with _transaction(db):
                        db.execute(statement)
            finally:
                db.execute("PRAGMA threads = 0")
                db.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
                _wal_on(db)  # if defer_upkeep left it

        await self._write(restore)

    async def changes(self, after: int, limit: int) -> list[Change]:
        resource_type = self.kind.type
        return [
            Change(
                position,
                resource_type,
                job,
                version,
                owner,
                deleted=bool(deleted),
                purged=bool(purged),
                stored=blob,
                previous=previous,
            )
            for position, job, version, owner, deleted, purged, blob, previous in self._read(
                self._changes, (after, limit)
            )
        ]

    async def feed_position(self) -> int:
        rows = self._read(self._feed_position)
        return int(rows[0][0]) if rows else 0

    async def position_before(self, at_ms: int) -> int:
        rows = self._read(self._position_before, (at_ms,))
        if rows and rows[0][0] is not None:
            return int(rows[0][0])
        return await self.feed_position()

    async def save(
        self,
        resource: dict[str, Any],
        *,
        expected_version: int,
        owner: str | None = None,
        method: str | None = None,
    ) -> JobRecord:
        write = Write(resource["id"], expected_version, resource, owner, method)
        [record] = await self.save_many([write])
        return record

    async def delete(self, job_id: str, *, expected_version: int) -> JobRecord:
        [record] = await self.save_many([Write(job_id, expected_version, None)])
        return record

    async def save_many(self, writes: Sequence[Write]) -> list[JobRecord]:
        """One BEGIN IMMEDIATE ... COMMIT for all: one fsync, and a VersionConflict rolls
        every write back. save and delete are a save_many of one write."""
        last_updated = now_instant()  # one transaction, one moment
        prepared = [self._prepared(write, last_updated) for write in writes]

        distinct = len({write.job_id for write in writes}) == len(writes)
        saves = [(write, row) for write, row in prepared if row is not None]
        bulk = len(writes) > 1 and distinct and len(saves) == len(writes)  # no deletion

        def write_all() -> list[JobRecord]:
            db = self._write_db
            with _transaction(db):
                if bulk:
                    return self._write_saves(db, saves, last_updated)
                return [self._write_one(db, write, row, last_updated) for write, row in prepared]

        return await self._write(write_all)

    def _prepared(
        self, write: Write, last_updated: str
    ) -> tuple[Write, tuple[dict[str, Any], tuple[Any, ...]] | None]:
        """The stamped resource and its live row, built before the writer thread's turn."""
        if write.resource is None:
            return write, None
        version = write.expected_version + 1
        stamped = stamp(write.resource, version, last_updated)
        return write, (stamped, self._live_row(stamped, version, write.owner))

    def _live_row(
        self, stamped: dict[str, Any], version: int, owner: str | None
    ) -> tuple[Any, ...]:
        values = index_values(stamped, self.parameters)
        return (
            stamped["id"],
            version,
            owner,
            stored_json(stamped, self.max_resource_bytes),
            *(values[c] for c in self._columns),
        )

    def prepare_new(self, resources: Sequence[dict[str, Any]], into: Path) -> "StagedRows":
        """The live rows of each resource's first version (a bulk load's, written by PUT),
        stamped now, staged in a new SQLite file at `into` (no journal, no fsync: a copy that
        a crash only loses): made by a load's worker process while the store writes the
        batch before, then copied with one statement (save_prepared), for binding rows from
        Python costs more than writing them."""
        last_updated = now_instant()
        rows = [self._live_row(stamp(r, 1, last_updated), 1, None) for r in resources]
        with closing(sqlite3.connect(into, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode = OFF")
            db.execute("PRAGMA synchronous = OFF")
            db.execute(f"CREATE TABLE {STAGED} ({self._live_columns})")
            db.execute("BEGIN")
            db.executemany(f"INSERT INTO {STAGED} VALUES ({self._live_marks})", rows)
            db.execute("COMMIT")
        return StagedRows(into, len(rows), last_updated)

    async def save_prepared(self, staged: "StagedRows") -> int:
        """prepare_new's rows in one transaction, their versions and changes copied from them
        (one statement each); VersionConflict if an id was ever used. The staged file is
        removed."""
        tables = self._tables
        live, versions, columns = tables.live, tables.versions, self._live_columns

        def write() -> int:
            db = self._write_db
            db.execute("ATTACH DATABASE ? AS staging", (str(staged.path),))
            try:
                with _transaction(db):
                    # Each staged id looked up in the versions' key (a join would scan it).
                    used = db.execute(
                        f"SELECT s.id FROM staging.{STAGED} s WHERE EXISTS "
                        f"(SELECT 1 FROM {versions} v WHERE v.job = s.id) LIMIT 1"
                    ).fetchone()
                    if used is not None:
                        newest = _newest_version_number(db, tables, used[0])
                        raise VersionConflict(used[0], 0, newest)
                    # No id has versions, so none has a live row: each row is a new one.
                    last_live, last_version = _last_rowid(db, live), _last_rowid(db, versions)
                    db.execute(
                        f"INSERT INTO {live} ({columns}) SELECT {columns} "
                        f"FROM staging.{STAGED} ORDER BY rowid"
                    )
                    db.execute(
                        f"INSERT INTO {versions} ({VERSION_COLUMNS}) "
                        f"SELECT id, version, ?, owner, resource, 'PUT', 1 FROM {live} "
                        "WHERE rowid > ? ORDER BY rowid",
                        (staged.last_updated, last_live),
                    )
                    _record_versions_after(db, tables, last_version, staged.last_updated)
            finally:
                db.execute("DETACH DATABASE staging")
                staged.path.unlink(missing_ok=True)
            return staged.count

        return await self._write(write)

    def _write_saves(
        self,
        db: sqlite3.Connection,
        saves: Sequence[tuple[Write, tuple[dict[str, Any], tuple[Any, ...]]]],
        last_updated: str,
    ) -> list[JobRecord]:
        """_write_one's checks and rows for saves of distinct ids, a statement for all rather
        than a few each: a thousand writes cost a few queries and three executemany."""
        tables = self._tables
        ids = [write.job_id for write, _ in saves]
        newest = _newest_versions(db, tables, ids)
        # A job is live only if it has versions.
        live: set[str] = set()
        for chunk, marks in _id_chunks([i for i in ids if i in newest]):
            live.update(
                row[0]
                for row in db.execute(f"SELECT id FROM {tables.live} WHERE id IN ({marks})", chunk)
            )
        for write, _ in saves:
            found = newest.get(write.job_id, 0)
            if found != write.expected_version:
                raise VersionConflict(write.job_id, write.expected_version, found)
        db.executemany(self._upsert, [row for _, (_, row) in saves])
        versions = [
            (
                write.job_id,
                write.expected_version + 1,
                last_updated,
                write.owner,
                row[3],
                write.method,
                write.job_id not in live,
            )
            for write, (_, row) in saves
        ]
        _append_versions(db, tables, versions)
        return [
            JobRecord(
                job,
                version,
                last_updated,
                stamped,
                owner,
                size=len(blob),
                method=method,
                created=created,
            )
            for (job, version, _, owner, blob, method, created), (_, (stamped, _)) in zip(
                versions, saves, strict=True
            )
        ]

    def _write_one(
        self,
        db: sqlite3.Connection,
        write: Write,
        prepared: tuple[dict[str, Any], tuple[Any, ...]] | None,
        last_updated: str,
    ) -> JobRecord:
        """The checks and rows of one save (a resource) or delete (None), inside the caller's
        transaction."""
        tables = self._tables
        job_id, expected, version = write.job_id, write.expected_version, write.expected_version + 1
        if prepared is None:
            live = db.execute(
                f"SELECT owner FROM {tables.live} WHERE id = ? AND version = ?",
                (job_id, expected),
            ).fetchone()
            if live is None:
                newest = _newest_version_number(db, tables, job_id)
                raise VersionConflict(job_id, expected, newest or None)
            db.execute(f"DELETE FROM {tables.live} WHERE id = ?", (job_id,))
            owner = str(live[0]) if live[0] is not None else None
            _append_versions(
                db, tables, [(job_id, version, last_updated, owner, None, "DELETE", False)]
            )
            return JobRecord(
                job_id, version, last_updated, None, owner, method="DELETE", created=False
            )
        stamped, row = prepared
        newest = _newest_version_number(db, tables, job_id)
        if newest != expected:
            raise VersionConflict(job_id, expected, newest)
        # The job is new, or deleted, unless it has a live row.
        created = newest == 0 or not _is_live(db, tables, job_id)
        db.execute(self._upsert, row)
        blob = row[3]
        _append_versions(
            db, tables, [(job_id, version, last_updated, write.owner, blob, write.method, created)]
        )
        return JobRecord(
            job_id,
            version,
            last_updated,
            stamped,
            write.owner,
            size=len(blob),
            method=write.method,
            created=created,
        )

    async def purge(self, *, before: str, statuses: frozenset[str]) -> int:
        cutoff = parse_instant_ms(before)
        marks = ", ".join("?" for _ in statuses)
        live_table, versions = self._tables.live, self._tables.versions
        # Jobs whose newest version is a deletion: (id, when it was deleted).
        deletions = (
            f"SELECT v.job, v.version, v.owner, v.last_updated FROM {versions} v "
            "WHERE v.resource IS NULL "
            f"AND v.version = (SELECT max(version) FROM {versions} WHERE job = v.job) "
            f"AND v.job NOT IN (SELECT id FROM {live_table})"
        )

        tables = self._tables
        purged_at = parse_instant_ms(now_instant())

        def write() -> int:
            db = self._write_db
            with _transaction(db):
                live = db.execute(
                    f"SELECT id, version, owner FROM {live_table} WHERE status IN ({marks}) "
                    "AND last_updated < ?",
                    (*sorted(statuses), cutoff),
                ).fetchall()
                deleted = [
                    (job, version, owner)
                    for job, version, owner, last_updated in db.execute(deletions)
                    if parse_instant_ms(last_updated) < cutoff
                ]
                db.executemany(
                    f"DELETE FROM {live_table} WHERE id = ?", [(row[0],) for row in live]
                )
                gone = [*live, *deleted]
                db.executemany(f"DELETE FROM {versions} WHERE job = ?", [(g[0],) for g in gone])
                # The feed says what went, and forgets what is older than what is kept.
                db.execute(f"DELETE FROM {feed_table(tables)} WHERE at < ?", (cutoff,))
                _record_changes(
                    db,
                    tables,
                    [(job, version, owner, True, True, purged_at) for job, version, owner in gone],
                )
                return len(gone)

        return await self._write(write)


def _newest_version_number(db: sqlite3.Connection, tables: Tables, job_id: str) -> int:
    row = db.execute(
        f"SELECT version FROM {tables.versions} WHERE job = ? ORDER BY version DESC LIMIT 1",
        (job_id,),
    ).fetchone()
    return 0 if row is None else int(row[0])


def _is_live(db: sqlite3.Connection, tables: Tables, job_id: str) -> bool:
    return db.execute(f"SELECT 1 FROM {tables.live} WHERE id = ?", (job_id,)).fetchone() is not None


def _journal_alone(db: sqlite3.Connection) -> None:
    """A rollback journal for a bulk load while no other connection has the file (no server
    on it): each page is then written once, not to the WAL and again into the file (about
    5 % of a 100,000-job load, by alternating runs). Otherwise WAL stays, asked without
    waiting. A process that opens the file meanwhile turns WAL on again between two batches
    (_wal_on; SQLite's other connections follow), as restore_upkeep does at the end, or the
    next open after a crash."""
    db.execute("PRAGMA busy_timeout = 0")
    try:
        db.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.OperationalError:
        pass  # another connection has the file open
    finally:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def _wal_on(db: sqlite3.Connection) -> None:
    """PRAGMA journal_mode = WAL, waiting up to the busy timeout for another process's write.
    The switch from a rollback journal (a bulk load's: _journal_alone) takes the file's
    exclusive lock without SQLite's busy handler, so while the load writes a batch it fails
    at once. An empty exclusive transaction waits for the batch, with the handler; the switch
    right after it finds the load's next batch waiting in the load's own handler."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() > deadline:
                raise
        db.execute("BEGIN EXCLUSIVE")
        db.execute("COMMIT")


def _newest_versions(db: sqlite3.Connection, tables: Tables, ids: Sequence[str]) -> dict[str, int]:
    """The newest version number of each of ids that has versions."""
    newest: dict[str, int] = {}
    for chunk, marks in _id_chunks(ids):
        newest.update(
            db.execute(
                f"SELECT job, max(version) FROM {tables.versions} WHERE job IN ({marks}) "
                "GROUP BY job",
                chunk,
            )
        )
    return newest


# A version row's columns, in the order of _append_versions's rows and _version_record's.
VERSION_COLUMNS = "job, version, last_updated, owner, resource, method, created"


def _append_versions(
    db: sqlite3.Connection, tables: Tables, rows: Sequence[tuple[Any, ...]]
) -> None:
    """Version rows (job, version, last_updated, owner, resource or None for a deletion,
    method, created) of one save_many (one moment), each with its change in the feed, inside
    the caller's transaction."""
    last = _last_rowid(db, tables.versions)
    db.executemany(
        f"INSERT INTO {tables.versions} ({VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows
    )
    _record_versions_after(db, tables, last, rows[0][2])


def _last_rowid(db: sqlite3.Connection, table: str) -> int:
    """The table's largest rowid (0 if empty): rows inserted after it get larger ones."""
    return int(db.execute(f"SELECT coalesce(max(rowid), 0) FROM {table}").fetchone()[0])


def _record_versions_after(
    db: sqlite3.Connection, tables: Tables, rowid: int, last_updated: str
) -> None:
    """The change of each version row past `rowid` (those just written, at last_updated),
    in the order they were written."""
    db.execute(
        f"INSERT INTO {feed_table(tables)} (job, version, owner, deleted, purged, at) "
        f"SELECT job, version, owner, resource IS NULL, 0, ? FROM {tables.versions} "
        "WHERE rowid > ? ORDER BY rowid",
        (parse_instant_ms(last_updated), rowid),
    )


@dataclass(frozen=True, slots=True)
class StagedRows:
    """First versions made ready by prepare_new: `count` live rows of one moment, in the
    table STAGED of the file at `path`."""

    path: Path
    count: int
    last_updated: str


STAGED = "staged_rows"


def feed_table(tables: Tables) -> str:
    """The kind's change feed (a resource type has no "_": no other table is named so)."""
    return f"{tables.name}_change"


def _record_changes(
    db: sqlite3.Connection, tables: Tables, changes: Sequence[tuple[Any, ...]]
) -> None:
    """Feed rows (job, version, owner, deleted, purged, at in epoch ms)."""
    db.executemany(
        f"INSERT INTO {feed_table(tables)} (job, version, owner, deleted, purged, at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        changes,
    )


def _id_chunks(ids: Sequence[str]) -> Iterator[tuple[Sequence[str], str]]:
    """The ids MAX_IDS_PER_QUERY at a time, each chunk with its `?, ?, ...` for `IN (...)`."""
    for start in range(0, len(ids), MAX_IDS_PER_QUERY):
        chunk = ids[start : start + MAX_IDS_PER_QUERY]
        yield chunk, ", ".join("?" for _ in chunk)


# A read by id also takes lastUpdated's index value: Last-Modified without parsing the JSON.
_LIVE_JOB_INDEXED = {"last_updated": 4}
# Where the stored JSON is in a row of the live table (_record) and of versions (_version_record).
_LIVE_RESOURCE = 3
_VERSION_RESOURCE = 4


def _record(row: tuple[Any, ...], indexed: Mapping[str, int]) -> JobRecord:
    """A job row: id, version, owner, resource, then index columns at the `indexed` places."""
    job_id, version, owner, blob = row[:4]
    return JobRecord(job_id, version, None, None, owner, stored=blob, indexed=(indexed, row))


def _version_record(row: tuple[Any, ...]) -> JobRecord:
    job_id, version, last_updated, owner, blob, method, created = row
    return JobRecord(
        job_id,
        version,
        last_updated,
        None,
        owner,
        stored=blob,
        method=method,
        created=None if created is None else bool(created),
    )


def versions_sql(query: HistoryQuery, select: str) -> tuple[str, tuple[Any, ...]]:
    """One page of the type's history: `select` (the version columns) in HISTORY_SORT, read
    from the index of the owner's or of all versions by time, in the order it is kept
    (backwards for newest first), so nothing is sorted."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.owner is not None:
        clauses.append("owner = ?")
        params.append(query.owner)
    if query.since is not None:
        clauses.append("last_updated >= ?")
        params.append(query.since)
    forward = query.cursor is None or query.cursor.forward
    if query.cursor is not None:
        # Row values compare key by key, as the index orders them (SQLite 3.15+).
        clauses.append(f"(last_updated, job, version) {'<' if forward else '>'} (?, ?, ?)")
        params += cursor_position(query.sort, query.cursor)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    direction = "DESC" if forward else "ASC"
    order = ", ".join(f"{c} {direction}" for c in ("last_updated", "job", "version"))
    return f"{select}{where} ORDER BY {order} LIMIT ?", (*params, query.limit)


# A query is immutable and clients repeat theirs (pollers, the same page links): the SQL
# for one is built once. Values are bound, so a cached statement holds no formatted input.
_SQL_CACHE_SIZE = 1024


@lru_cache(maxsize=_SQL_CACHE_SIZE)
def count_sql(
    query: JobQuery, tokens: tuple[str, ...] = TOKEN_COLUMNS, tables: Tables = TABLES
) -> tuple[str, tuple[Any, ...]]:
    """The SELECT counting query's matches: from the tally when it can answer. `tokens` are
    the store's token columns (the tally's key)."""
    where, params = _where(query, tokens)
    if _tally_answers(query, tokens):
        return f"SELECT coalesce(sum(n), 0) FROM {tables.tally}{where}", tuple(params)
    return f"SELECT count(*) FROM {tables.live}{where}", tuple(params)


@lru_cache(maxsize=_SQL_CACHE_SIZE)
def search_sql(
    query: JobQuery, tokens: tuple[str, ...] = TOKEN_COLUMNS, tables: Tables = TABLES
) -> tuple[str, tuple[Any, ...]]:
    """The SELECT for one page of query; values are always bound, never formatted in.

    A token matching one of several values is split into one SELECT per value, merged in
    sort order (UNION ALL): each reads its index in order, so nothing is sorted afterwards.
    """
    keys = full_sort(query.sort)
    forward = query.cursor is None or query.cursor.forward
    parts = _disjoint_parts(query, tokens)
    # The sort columns come with each row: a merge orders by them, and the page's cursor
    # links are made of them (without them every resource on the page would be parsed).
    columns = ", ".join(["id", "version", "owner", "resource", *sort_columns(query.sort)])
    selects: list[str] = []
    params: list[Any] = []
    for part in parts:
        where, part_params = _where(part, tokens, ordered=True)
        if part.cursor is not None:
            keyset, keyset_params = _keyset(part, keys, part.cursor)
            where = f"{where} AND {keyset}" if where else f" WHERE {keyset}"
            part_params += keyset_params
        selects.append(f"SELECT {columns} FROM {tables.live}{where}")
        params += part_params
    order = ", ".join(f"{k.column} {'DESC' if k.descending == forward else 'ASC'}" for k in keys)
    sql = f"{' UNION ALL '.join(selects)} ORDER BY {order} LIMIT ?"
    params.append(query.limit)
    if query.offset:
        sql += " OFFSET ?"
        params.append(query.offset)
    return sql, tuple(params)


MAX_MERGED_VALUES = 16


def _disjoint_parts(query: JobQuery, tokens: tuple[str, ...]) -> list[JobQuery]:
    """query, or one query per value of its first token matching several values."""
    for i, any_of in enumerate(query.where):
        match = any_of[0]
        if (
            len(any_of) == 1
            and isinstance(match, TokenMatch)
            and not match.negate
            and match.column in tokens
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


def _tally_answers(query: JobQuery, tokens: tuple[str, ...]) -> bool:
    """Whether the tally can count query: all it asks for is one of some values per token
    (with no token columns there is no tally)."""
    return (
        bool(tokens)
        and query.owner is None
        and all(
            len(any_of) == 1
            and isinstance(any_of[0], TokenMatch)
            and not any_of[0].negate
            and any_of[0].column in tokens
            for any_of in query.where
        )
    )


def _where(
    query: JobQuery, tokens: tuple[str, ...], ordered: bool = False
) -> tuple[str, list[Any]]:
    """The WHERE clause; `ordered` (a page in sort order) keeps SQLite on the sort's index:
    a filter on another date column is then checked row by row (unary +), never used to pick
    an index whose order would need a temporary B-tree to sort every match."""
    clauses: list[str] = []
    params: list[Any] = []
    leading = full_sort(query.sort)[0].column if ordered else None
    for any_of in query.where:
        parts = [_condition(c, params, tokens, _may_use_index(c, leading, tokens)) for c in any_of]
        clauses.append(parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")")
    if query.owner is not None:
        clauses.append("owner = ?")
        params.append(query.owner)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _may_use_index(condition: Condition, leading: str | None, tokens: tuple[str, ...]) -> bool:
    # token filters lead their own indexes; an _id list is a few primary-key lookups
    return leading is None or condition.column in (leading, "id", *tokens)


def _condition(
    condition: Condition, params: list[Any], tokens: tuple[str, ...], indexed: bool = True
) -> str:
    name = condition.column if indexed else f"+{condition.column}"
    if isinstance(condition, TokenMatch):
        values = sorted(condition.values)
        params += values
        if len(values) == 1:
            return f"{name} {'!=' if condition.negate else '='} ?"
        marks = ", ".join("?" for _ in values)
        return f"{name} {'NOT IN' if condition.negate else 'IN'} ({marks})"
    if isinstance(condition, Missing):
        params.append(MISSING_TOKEN if condition.column in tokens else MISSING_DATE)
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
