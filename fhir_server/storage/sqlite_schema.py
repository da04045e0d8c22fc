"""The SQLite file's schema: its tables, their indexes, and bringing an older file up to date.

Each resource kind has tables of its own in the one file, named from its storage_name
(Tables): AsyncJob's live jobs are in `asyncjob`, every version in `asyncjob_version`. Two
things change a file's schema. The layout of its tables has a version (PRAGMA user_version, one
for the whole file), and MIGRATIONS brings an older file to the current one. The search
parameters a kind's tables were built for are recorded in its `_parameter` table: each has a
column of the live table, indexes, and, if a token, a place in the tally's key; a kind opened
with another list is changed to fit it (see storage/schema.py). Both happen in the caller's
transaction, so a failure changes nothing.
"""

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson

from ..resources.asyncjob import SEARCH_PARAMETERS
from ..resources.kinds import ResourceKind, SearchParameter
from ..search.query import MISSING_DATE, MISSING_TOKEN
from .base import SchemaTooNew, StoreMigrationFailed
from .schema import (
    REMEDY,
    V1_PARAMETERS,
    Change,
    Indexed,
    cause,
    change,
    job_values,
    sort_columns,
    token_columns,
)

SCHEMA_VERSION = 7
BACKFILL_BATCH = 1000  # jobs read and updated at a time while filling a new column
TALLY_EVENTS = ("insert", "delete", "update")  # a trigger each keeps the tally


@dataclass(frozen=True, slots=True)
class Tables:
    """A kind's tables, triggers and indexes in the file, all named from its storage_name, so
    kinds sharing the file never touch each other's (a resource type has no "_": no kind's
    live table is named like another's `_version` table).

    The parameter record is a table per kind as well, not one table with a type column: a
    kind's schema is then just the tables with its name, so fitting one kind reads and writes
    nothing of another's, and version 3 only renamed AsyncJob's tables."""

    name: str

    @classmethod
    def of(cls, kind: ResourceKind) -> "Tables":
        return cls(kind.storage_name)

    @property
    def live(self) -> str:
        # Quoted: a type's name may be an SQL keyword (Group); the suffixed names are not.
        return f'"{self.name}"'

    @property
    def versions(self) -> str:
        return f"{self.name}_version"

    @property
    def versions_by_time(self) -> str:
        """The index of a type's history, newest first (its entries end in job, version)."""
        return f"{self.versions}_by_time"

    @property
    def versions_by_owner(self) -> str:
        """The index of one owner's part of the type's history, newest first."""
        return f"{self.versions}_by_owner"

    @property
    def live_owner(self) -> str:
        """The live table's index of (id, owner): whether a caller owns an id, read from the
        index alone."""
        return f"{self.name}_id_owner"

    @property
    def versions_owner(self) -> str:
        """The versions table's index of (job, version, owner): a job's newest version and its
        owner, read from the index alone."""
        return f"{self.name}_version_owner"

    @property
    def tally(self) -> str:
        return f"{self.name}_tally"

    @property
    def parameters(self) -> str:
        return f"{self.name}_parameter"

    @property
    def owners(self) -> str:
        """Each owner's live resources and bytes (_create_owner_tally): derived data, made on
        open after the migrations, so no step of MIGRATIONS reads or rebuilds it."""
        return f"{self.name}_owner"

    def trigger(self, event: str) -> str:
        return f"{self.name}_tally_{event}"

    def owner_trigger(self, event: str) -> str:
        return f"{self.name}_owner_{event}"

    @property
    def index_prefix(self) -> str:
        return f"ix_{self.name}_"

    def index_name(self, key: tuple[tuple[str, bool], ...]) -> str:
        return self.index_prefix + "_".join(c + ("_desc" if d else "") for c, d in key if c != "id")


def _record_parameters(db: sqlite3.Connection) -> None:
    """Version 2 records the search parameters: a version 1 file was built for V1_PARAMETERS."""
    _create_record(db, "schema_parameter")
    _write_record(db, "schema_parameter", V1_PARAMETERS)


def _name_by_kind(db: sqlite3.Connection) -> None:
    """Version 3 names AsyncJob's tables from its kind, so other kinds can share the file.

    ALTER TABLE ... RENAME keeps the rows (and renames the primary keys' indexes along). A
    trigger or another index cannot be renamed: the tally's triggers are dropped first, so
    nothing relies on SQLite rewriting their bodies (3.26+), and made again; the search
    indexes are dropped, and built under their new names as the parameters are fitted (once:
    about 4 s for 100,000 jobs)."""
    new = Tables("asyncjob")
    for event in TALLY_EVENTS:
        db.execute(f"DROP TRIGGER IF EXISTS job_tally_{event}")
    for (name,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'job' "
        "AND substr(name, 1, 7) = 'ix_job_'"
    ).fetchall():
        db.execute(f"DROP INDEX {name}")
    db.execute(f"ALTER TABLE job RENAME TO {new.live}")
    db.execute(f"ALTER TABLE job_version RENAME TO {new.versions}")
    db.execute(f"ALTER TABLE schema_parameter RENAME TO {new.parameters}")
    # Without token parameters there was no tally.
    if tokens := tuple(c for c in _columns(db, "job_tally") if c != "n"):
        db.execute(f"ALTER TABLE job_tally RENAME TO {new.tally}")
        _create_tally_triggers(db, new, tokens)


def _add_oauth_clients(db: sqlite3.Connection) -> None:
    """Version 4 keeps the registered OAuth clients and the assertion ids (jti) they used
    (storage/sqlite_clients.py): tables of the file, not of a kind."""
    db.execute(
        "CREATE TABLE oauth_client (id TEXT PRIMARY KEY, scope TEXT NOT NULL, jwks TEXT, "
        "jwks_url TEXT, registered TEXT NOT NULL)"
    )
    db.execute(
        "CREATE TABLE oauth_assertion (client TEXT NOT NULL, jti TEXT NOT NULL, "
        "expires REAL NOT NULL, PRIMARY KEY (client, jti)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX ix_oauth_assertion_expires ON oauth_assertion (expires)")


def _record_write_methods(db: sqlite3.Connection) -> None:
    """Version 5 records how each version was written (the method, whether it created the
    resource) and indexes every kind's versions by time, for the type's history.

    The columns are added empty (NULL, no table rewrite): a version written before says
    nothing, and is read as DELETE for a deletion, POST for a first version, else PUT
    (JobRecord.method). Building the two indexes reads every version once (about 2 s for
    300,000 versions)."""
    for (table,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%\\_version' "
        "ESCAPE '\\'"
    ).fetchall():
        db.execute(f"ALTER TABLE {table} ADD COLUMN method TEXT")
        db.execute(f"ALTER TABLE {table} ADD COLUMN created INTEGER")
        db.execute(f"CREATE INDEX {table}_by_time ON {table} (last_updated)")
        db.execute(f"CREATE INDEX {table}_by_owner ON {table} (owner, last_updated)")


def _versions_out_of_the_key(db: sqlite3.Connection) -> None:
    """Version 6 stores each kind's versions in a rowid table, with its keys in indexes.

    In the WITHOUT ROWID table the b-tree that a lookup by (job, version) walks held whole
    rows, resources included, so looking up an id without versions cost milliseconds once
    versions were large, against microseconds for an id with a live row: the time of a read
    told whether another owner's job had that id. Now lookups walk indexes of small keys,
    and two more indexes answer "does this caller own the id" without reading a row
    (sqlite.py). Every version is copied once, in (job, version) order."""
    # Each kind in the file has its record of parameters (and kinds' names have no "_").
    kinds = [
        name[: -len("_parameter")]
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND substr(name, -10) = '_parameter'"
        ).fetchall()
    ]
    for kind in kinds:
        versions = f"{kind}_version"
        db.execute(
            f"CREATE TABLE {versions}_new (job TEXT NOT NULL, version INTEGER NOT NULL, "
            "last_updated TEXT NOT NULL, owner TEXT, resource BLOB, method TEXT, "
            "created INTEGER, PRIMARY KEY (job, version))"
        )
        columns = "job, version, last_updated, owner, resource, method, created"
        db.execute(
            f"INSERT INTO {versions}_new ({columns}) SELECT {columns} FROM {versions} "
            "ORDER BY job, version"
        )
        db.execute(f"DROP TABLE {versions}")
        db.execute(f"ALTER TABLE {versions}_new RENAME TO {versions}")
        db.execute(f"CREATE INDEX {kind}_version_owner ON {versions} (job, version, owner)")
        # The type's history by time (version 5's indexes, which ended in the key of the
        # WITHOUT ROWID table: a rowid table's end in the rowid, so the key is spelled out).
        db.execute(f"CREATE INDEX {versions}_by_time ON {versions} (last_updated, job, version)")
        db.execute(
            f"CREATE INDEX {versions}_by_owner ON {versions} (owner, last_updated, job, version)"
        )
        db.execute(f'CREATE UNIQUE INDEX {kind}_id_owner ON "{kind}" (id, owner)')


def _one_index_per_sort(db: sqlite3.Connection) -> None:
    """Version 7 sorts ties by id the sort's way (search/query.py full_sort), so one index
    per sort column serves both directions: each kind's second, descending index of a
    column goes (fitting the parameters on open makes the rest: the owner's newest jobs'
    index, renamed). A bulk load may also leave a file without its search indexes and tally
    triggers until it ends (defer_upkeep): this version restores them on open, which a
    version 6 fhir-server would not, so it must not open the file."""
    for (name,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND substr(name, 1, 3) = 'ix_' "
        "AND substr(name, -5) = '_desc'"
    ).fetchall():
        db.execute(f'DROP INDEX "{name}"')


# MIGRATIONS[n] brings a file from schema version n to n + 1. Each is fixed once released: it
# never depends on the current kinds or parameter lists. From version 3 on, a migration is of
# every kind's tables in the file (and of the file's own tables), so a new file (version 0)
# starts at version 3: each kind makes its tables when it first opens the file
# (_create_tables), and the later migrations make the file's own.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _record_parameters,
    2: _name_by_kind,
    3: _add_oauth_clients,
    4: _record_write_methods,
    5: _versions_out_of_the_key,
    6: _one_index_per_sort,
}
NEW_FILE_VERSION = 3


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the file to SCHEMA_VERSION, in the caller's transaction."""
    found = db.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{path} was written by a newer fhir-server (schema version {found}; "
            f"this one reads up to {SCHEMA_VERSION}). Upgrade fhir-server, or use "
            "another --data-dir."
        )
    with _migration(path):
        for version in range(found or NEW_FILE_VERSION, SCHEMA_VERSION):
            MIGRATIONS[version](db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def prepare(db: sqlite3.Connection, path: Path, kind: ResourceKind) -> None:
    """Bring the file to SCHEMA_VERSION and `kind`'s tables to its search parameters, in the
    caller's transaction."""
    migrate(db, path)
    with _migration(path):
        tables = Tables.of(kind)
        if not _columns(db, tables.name):
            _create_tables(db, tables)
        _fit_parameters(db, tables, kind.search_parameters)
        if not _columns(db, tables.owners):
            _create_owner_tally(db, tables)
        _restore_upkeep(db, tables, kind.search_parameters)


@contextmanager
def _migration(path: Path) -> Iterator[None]:
    """A failure is a StoreMigrationFailed (the caller's transaction is rolled back)."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, sqlite3.OperationalError) and _busy(exc):
            raise  # another process holds the file: StoreUnavailable, worth retrying
        raise StoreMigrationFailed(
            f"{path}: bringing the data file to this fhir-server's schema failed, and nothing "
            f"was changed: {cause(exc)}. {REMEDY}"
        ) from exc


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = exc.sqlite_errorcode & 0xFF  # the primary code of an extended one
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _create_tables(db: sqlite3.Connection, tables: Tables) -> None:
    """A kind's tables when it first opens the file: without search columns and with nothing
    recorded, so fitting them to its parameters adds each, as it adds one to an older file."""
    db.execute(
        f"CREATE TABLE {tables.live} (id TEXT PRIMARY KEY, version INTEGER NOT NULL, "
        "owner TEXT, resource BLOB NOT NULL)"
    )
    # A rowid table: its resources stay out of the indexes that lookups walk. method and
    # created: how the version was written (NULL: not recorded).
    db.execute(
        f"CREATE TABLE {tables.versions} (job TEXT NOT NULL, version INTEGER NOT NULL, "
        "last_updated TEXT NOT NULL, owner TEXT, resource BLOB, method TEXT, created INTEGER, "
        "PRIMARY KEY (job, version))"
    )
    # The type's history, newest first: all versions, and one owner's.
    db.execute(
        f"CREATE INDEX {tables.versions_by_time} ON {tables.versions} (last_updated, job, version)"
    )
    db.execute(
        f"CREATE INDEX {tables.versions_by_owner} ON {tables.versions} "
        "(owner, last_updated, job, version)"
    )
    db.execute(f"CREATE INDEX {tables.versions_owner} ON {tables.versions} (job, version, owner)")
    db.execute(f"CREATE UNIQUE INDEX {tables.live_owner} ON {tables.live} (id, owner)")
    _create_record(db, tables.parameters)


def _fit_parameters(
    db: sqlite3.Connection, tables: Tables, parameters: Sequence[SearchParameter]
) -> None:
    needed = change(_recorded(db, tables.parameters), parameters)
    keys = {tables.index_name(key): key for key in index_keys(parameters)}
    # Indexes of removed columns first: SQLite drops no column that an index uses.
    for name, columns in _indexes(db, tables).items():
        if name not in keys or columns & set(needed.removed):
            db.execute(f"DROP INDEX {name}")
    if needed.columns:
        _change_columns(db, tables, needed, token_columns(parameters))
    if needed.record is not None:
        db.execute(f"DELETE FROM {tables.parameters}")
        _write_record(db, tables.parameters, needed.record)
    for name, key in keys.items():
        terms = ", ".join(c + (" DESC" if d else "") for c, d in key)
        db.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {tables.live} ({terms})")


def _change_columns(
    db: sqlite3.Connection, tables: Tables, needed: Change, tokens: tuple[str, ...]
) -> None:
    # The tally's key is the token columns: it is made again for the new ones (and its
    # triggers name the columns, which SQLite would not let go otherwise).
    db.execute(f"DROP TABLE IF EXISTS {tables.tally}")
    for event in TALLY_EVENTS:
        db.execute(f"DROP TRIGGER IF EXISTS {tables.trigger(event)}")
    # A removed parameter's column is dropped (SQLite 3.35+), not left behind: nothing would
    # keep its values up to date, and a column of a version 1 file has no default, so every
    # insert leaving it out would fail.
    for column in needed.removed:
        db.execute(f"ALTER TABLE {tables.live} DROP COLUMN {column}")
    for p in needed.added:
        # SQLite adds a NOT NULL column only with a default: the value of an absent element
        missing = MISSING_DATE if p.type == "date" else f"'{MISSING_TOKEN}'"
        db.execute(
            f"ALTER TABLE {tables.live} ADD COLUMN {p.column} {_column_type(p.type)} NOT NULL "
            f"DEFAULT {missing}"
        )
    if needed.added:
        _backfill(db, tables, needed.added)
    _create_tally(db, tables, tokens)
    if tokens:
        names = ", ".join(tokens)
        db.execute(
            f"INSERT INTO {tables.tally} ({names}, n) "
            f"SELECT {names}, count(*) FROM {tables.live} GROUP BY {names}"
        )


def _column_type(parameter_type: str) -> str:
    return "INTEGER" if parameter_type == "date" else "TEXT"


def _backfill(db: sqlite3.Connection, tables: Tables, added: Sequence[SearchParameter]) -> None:
    """Each live job's values of the added parameters, from its stored JSON (deleted versions
    are in the versions table only, which has no search columns)."""
    columns = [p.column for p in added]
    update = f"UPDATE {tables.live} SET {', '.join(f'{c} = ?' for c in columns)} WHERE id = ?"
    select = f"SELECT id, resource FROM {tables.live} WHERE id > ? ORDER BY id LIMIT ?"
    last = ""  # every id sorts after it
    while rows := db.execute(select, (last, BACKFILL_BATCH)).fetchall():
        updates = []
        for job_id, blob in rows:
            values = job_values(job_id, orjson.loads(blob), added)
            updates.append((*(values[c] for c in columns), job_id))
        db.executemany(update, updates)
        last = rows[-1][0]


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    """The table's columns: none if there is no such table."""
    return [row[0] for row in db.execute("SELECT name FROM pragma_table_info(?)", (table,))]


def _create_record(db: sqlite3.Connection, table: str) -> None:
    db.execute(
        f"CREATE TABLE {table} (column_name TEXT PRIMARY KEY, name TEXT NOT NULL, "
        "type TEXT NOT NULL, path TEXT NOT NULL)"
    )


def _recorded(db: sqlite3.Connection, table: str) -> tuple[Indexed, ...]:
    rows = db.execute(f"SELECT name, column_name, type, path FROM {table}")
    return tuple(
        Indexed(name, column, kind, tuple(path.split("."))) for name, column, kind, path in rows
    )


def _write_record(db: sqlite3.Connection, table: str, record: Sequence[Indexed]) -> None:
    db.executemany(
        f"INSERT INTO {table} (column_name, name, type, path) VALUES (?, ?, ?, ?)",
        [(r.column, r.name, r.type, ".".join(r.path)) for r in record],
    )


def _indexes(db: sqlite3.Connection, tables: Tables) -> dict[str, set[str]]:
    """This module's indexes on the kind's live table and their columns (SQLite's own, for
    the primary key, are not listed)."""
    indexes: dict[str, set[str]] = {}
    prefix = tables.index_prefix
    for name, column in db.execute(
        "SELECT m.name, c.name FROM sqlite_master m, pragma_index_info(m.name) c "
        "WHERE m.type = 'index' AND m.tbl_name = ? AND substr(m.name, 1, ?) = ?",
        (tables.name, len(prefix), prefix),
    ):
        indexes.setdefault(name, set()).add(column)
    return indexes


def _create_tally(db: sqlite3.Connection, tables: Tables, tokens: tuple[str, ...]) -> None:
    """The tally: live jobs per combination of token values, kept by triggers, so counting a
    token search reads a few rows instead of every match (a search answers with its total).
    Without token parameters there is nothing to key it by: counts then read the live table."""
    if not tokens:
        return
    names = ", ".join(tokens)
    key = ", ".join(f"{c} TEXT NOT NULL" for c in tokens)
    db.execute(f"CREATE TABLE {tables.tally} ({key}, n INTEGER NOT NULL, PRIMARY KEY ({names}))")
    _create_tally_triggers(db, tables, tokens)


def _create_tally_triggers(db: sqlite3.Connection, tables: Tables, tokens: tuple[str, ...]) -> None:
    names = ", ".join(tokens)

    def same(row: str) -> str:
        return " AND ".join(f"{c} = {row}.{c}" for c in tokens)

    add = (
        f"INSERT INTO {tables.tally} ({names}, n) VALUES "
        f"({', '.join('NEW.' + c for c in tokens)}, 1) "
        f"ON CONFLICT ({names}) DO UPDATE SET n = n + 1;"
    )
    remove = f"UPDATE {tables.tally} SET n = n - 1 WHERE {same('OLD')};"
    live, trigger = tables.live, tables.trigger
    db.execute(f"CREATE TRIGGER {trigger('insert')} AFTER INSERT ON {live} BEGIN {add} END")
    db.execute(f"CREATE TRIGGER {trigger('delete')} AFTER DELETE ON {live} BEGIN {remove} END")
    db.execute(
        f"CREATE TRIGGER {trigger('update')} AFTER UPDATE OF {names} ON {live} "
        f"BEGIN {remove} {add} END"
    )


def _create_owner_tally(db: sqlite3.Connection, tables: Tables) -> None:
    """Each owner's live resources and their bytes, kept by triggers (so by every writer of
    the file, whichever process): the per-owner quotas read one row. Made, and filled from
    the live table, when a kind's tables do not have it yet; it is derived data, so this
    needs no schema version of its own."""
    db.execute(
        f"CREATE TABLE {tables.owners} (owner TEXT PRIMARY KEY, jobs INTEGER NOT NULL, "
        "bytes INTEGER NOT NULL)"
    )
    _count_owners(db, tables)
    _create_owner_triggers(db, tables)


def _count_owners(db: sqlite3.Connection, tables: Tables) -> None:
    db.execute(f"DELETE FROM {tables.owners}")
    db.execute(
        f"INSERT INTO {tables.owners} (owner, jobs, bytes) SELECT owner, count(*), "
        f"sum(length(resource)) FROM {tables.live} WHERE owner IS NOT NULL GROUP BY owner"
    )


def _count_tokens(db: sqlite3.Connection, tables: Tables, tokens: tuple[str, ...]) -> None:
    names = ", ".join(tokens)
    db.execute(f"DELETE FROM {tables.tally}")
    db.execute(
        f"INSERT INTO {tables.tally} ({names}, n) "
        f"SELECT {names}, count(*) FROM {tables.live} GROUP BY {names}"
    )


def _create_owner_triggers(db: sqlite3.Connection, tables: Tables) -> None:
    owners = tables.owners

    def add(row: str) -> str:
        return (
            f"INSERT INTO {owners} (owner, jobs, bytes) SELECT {row}.owner, 1, "
            f"length({row}.resource) WHERE {row}.owner IS NOT NULL ON CONFLICT (owner) "
            f"DO UPDATE SET jobs = jobs + 1, bytes = bytes + excluded.bytes;"
        )

    def remove(row: str) -> str:
        return (
            f"UPDATE {owners} SET jobs = jobs - 1, bytes = bytes - length({row}.resource) "
            f"WHERE owner = {row}.owner;"
        )

    live, trigger = tables.live, tables.owner_trigger
    db.execute(f"CREATE TRIGGER {trigger('insert')} AFTER INSERT ON {live} BEGIN {add('NEW')} END")
    db.execute(
        f"CREATE TRIGGER {trigger('delete')} AFTER DELETE ON {live} BEGIN {remove('OLD')} END"
    )
    db.execute(
        f"CREATE TRIGGER {trigger('update')} AFTER UPDATE OF owner, resource ON {live} "
        f"BEGIN {remove('OLD')} {add('NEW')} END"
    )


# A bulk load into an empty or small store (jobs/loader.py) writes rows without their upkeep:
# keeping 12 more B-trees and two tallies up to date row by row cost most of an insert, while
# building an index afterwards sorts once. It drops what _restore_upkeep makes again: the
# search indexes not led by the time of writing, the tally triggers. Every open restores what
# is missing (prepare), so a load that was killed leaves a file that the next open (or the
# rerun of the load) completes. The indexes that reads name (INDEXED BY), the keys and the
# indexes led by the time of writing (a batch's rows, one moment and written in id order, go
# to their end) stay.


def defer_upkeep(db: sqlite3.Connection, tables: Tables) -> None:
    """Drop the kind's deferrable indexes and its tallies' triggers, in the caller's
    transaction: the tallies are counted again when they come back."""
    for name in _deferrable_indexes(db, tables):
        db.execute(f'DROP INDEX "{name}"')
    _drop_triggers(db, tables.trigger)
    _drop_triggers(db, tables.owner_trigger)


def _drop_triggers(db: sqlite3.Connection, name: Callable[[str], str]) -> None:
    for event in TALLY_EVENTS:
        db.execute(f"DROP TRIGGER IF EXISTS {name(event)}")


def restore_tallies(db: sqlite3.Connection, tables: Tables, tokens: tuple[str, ...]) -> None:
    """The tallies' triggers, if dropped, and the tallies counted again, in the caller's
    transaction (one GROUP BY each: writes made while they were gone count too)."""
    if not _triggers(db, tables.owner_trigger):
        _drop_triggers(db, tables.owner_trigger)
        _count_owners(db, tables)
        _create_owner_triggers(db, tables)
    if tokens and not _triggers(db, tables.trigger):
        _drop_triggers(db, tables.trigger)
        _count_tokens(db, tables, tokens)
        _create_tally_triggers(db, tables, tokens)


def missing_indexes(
    db: sqlite3.Connection, tables: Tables, parameters: Sequence[SearchParameter]
) -> list[str]:
    """CREATE INDEX statements of the deferrable indexes the kind's tables lack."""
    have = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    wanted = {
        tables.versions_by_time: f"{tables.versions} (last_updated, job, version)",
        tables.versions_by_owner: f"{tables.versions} (owner, last_updated, job, version)",
    }
    for key in index_keys(parameters):
        terms = ", ".join(c + (" DESC" if d else "") for c, d in key)
        wanted[tables.index_name(key)] = f"{tables.live} ({terms})"
    return [f"CREATE INDEX IF NOT EXISTS {n} ON {on}" for n, on in wanted.items() if n not in have]


def _restore_upkeep(
    db: sqlite3.Connection, tables: Tables, parameters: Sequence[SearchParameter]
) -> None:
    restore_tallies(db, tables, token_columns(parameters))
    for statement in missing_indexes(db, tables, parameters):
        db.execute(statement)


def _deferrable_indexes(db: sqlite3.Connection, tables: Tables) -> list[str]:
    """The search indexes but those led by the time of writing: a load's rows (one moment a
    batch, in id order) go to the end of those, cheaply, so they are kept."""
    prefix = tables.index_prefix
    kept = {tables.index_name(key) for key in TIME_LED_KEYS}
    return [
        row[0]
        for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND substr(name, 1, ?) = ?",
            (len(prefix), prefix),
        )
        if row[0] not in kept
    ]


def _triggers(db: sqlite3.Connection, name: Callable[[str], str]) -> bool:
    """Whether all three triggers named by `name` are there."""
    names = [name(event) for event in TALLY_EVENTS]
    marks = ", ".join("?" for _ in names)
    found = db.execute(
        f"SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name IN ({marks})", names
    ).fetchone()[0]
    return bool(found == len(names))


# The live table's indexes led by last_updated (alone or behind the owner): a bulk load
# appends to them (defer_upkeep keeps them), as it does to the versions' by_time/by_owner.
TIME_LED_KEYS = (
    (("last_updated", False), ("id", False)),
    (("owner", False), ("last_updated", False), ("id", False)),
)


def index_keys(
    parameters: Sequence[SearchParameter] = SEARCH_PARAMETERS,
) -> list[tuple[tuple[str, bool], ...]]:
    """(column, descending) per index: every sort column alone and behind each token filter,
    and one owner's newest jobs; each ending in the unique id so the tie-breaker is served
    too. The id goes the sort's way (full_sort), so an index read backwards serves the
    opposite order: one index per sort column, not one per direction. Behind a token filter
    (an equality) the token's own order does not matter either."""
    keys: list[tuple[tuple[str, bool], ...]] = []
    for token in (None, *token_columns(parameters)):
        for column in sort_columns(parameters):
            key: list[tuple[str, bool]] = [] if token is None else [(token, False)]
            if column not in (token, "id"):
                key.append((column, False))
            key.append(("id", False))
            if len(key) > 1 and tuple(key) not in keys:
                keys.append(tuple(key))
    # A caller without the admin scope always searches its own jobs: newest first by default
    # (another sort of one owner's jobs sorts only that owner's jobs).
    keys.append((("owner", False), ("last_updated", False), ("id", False)))
    return keys
