"""The SQLite file's schema: its tables, their indexes, and bringing an older file up to date.

Two things change a file's schema. The layout of its tables has a version (PRAGMA
user_version), and MIGRATIONS brings an older file to the current one. The search parameters
it was built for are recorded in schema_parameter: each has a column of `job`, indexes, and,
if a token, a place in job_tally's key; a file opened with another list is changed to fit it
(see storage/schema.py). Both happen in the caller's transaction, so a failure changes nothing.
"""

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from ..resources.asyncjob import SEARCH_PARAMETERS
from ..resources.kinds import SearchParameter
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

SCHEMA_VERSION = 2
BACKFILL_BATCH = 1000  # jobs read and updated at a time while filling a new column


def _column_type(parameter_type: str) -> str:
    return "INTEGER" if parameter_type == "date" else "TEXT"


def _create_v1_schema(db: sqlite3.Connection) -> None:
    """The tables as commit c436025 made them, with a column per parameter of V1_PARAMETERS."""
    columns = ", ".join(
        f"{p.column} {_column_type(p.type)} NOT NULL" for p in V1_PARAMETERS if p.column != "id"
    )
    db.execute(
        "CREATE TABLE job (id TEXT PRIMARY KEY, version INTEGER NOT NULL, owner TEXT, "
        f"resource BLOB NOT NULL, {columns})"
    )
    _create_tally(
        db, tuple(p.column for p in V1_PARAMETERS if p.type == "token" and p.column != "id")
    )
    db.execute(
        "CREATE TABLE job_version (job TEXT NOT NULL, version INTEGER NOT NULL, "
        "last_updated TEXT NOT NULL, owner TEXT, resource BLOB, PRIMARY KEY (job, version)) "
        "WITHOUT ROWID"
    )


def _record_parameters(db: sqlite3.Connection) -> None:
    """Version 2 records the search parameters: a version 1 file was built for V1_PARAMETERS."""
    db.execute(
        "CREATE TABLE schema_parameter (column_name TEXT PRIMARY KEY, name TEXT NOT NULL, "
        "type TEXT NOT NULL, path TEXT NOT NULL)"
    )
    _write_record(db, V1_PARAMETERS)


# MIGRATIONS[n] brings a file from schema version n to n + 1; version 0 is an empty file.
# Each is fixed once released: it never depends on the current parameter list.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    0: _create_v1_schema,
    1: _record_parameters,
}


def prepare(db: sqlite3.Connection, path: Path, parameters: Sequence[SearchParameter]) -> None:
    """Bring the file to SCHEMA_VERSION and `parameters`, in the caller's transaction."""
    found = db.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{path} was written by a newer fhir-server (schema version {found}; "
            f"this one reads up to {SCHEMA_VERSION}). Upgrade fhir-server, or use "
            "another --data-dir."
        )
    try:
        for version in range(found, SCHEMA_VERSION):
            MIGRATIONS[version](db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        _fit_parameters(db, parameters)
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


def _fit_parameters(db: sqlite3.Connection, parameters: Sequence[SearchParameter]) -> None:
    needed = change(_recorded(db), parameters)
    keys = {index_name(key): key for key in index_keys(parameters)}
    # Indexes of removed columns first: SQLite drops no column that an index uses.
    for name, columns in _indexes(db).items():
        if name not in keys or columns & set(needed.removed):
            db.execute(f"DROP INDEX {name}")
    if needed.columns:
        _change_columns(db, needed, token_columns(parameters))
    if needed.record is not None:
        db.execute("DELETE FROM schema_parameter")
        _write_record(db, needed.record)
    for name, key in keys.items():
        terms = ", ".join(c + (" DESC" if d else "") for c, d in key)
        db.execute(f"CREATE INDEX IF NOT EXISTS {name} ON job ({terms})")


def _change_columns(db: sqlite3.Connection, needed: Change, tokens: tuple[str, ...]) -> None:
    # The tally's key is the token columns: it is made again for the new ones (and its
    # triggers name the columns, which SQLite would not let go otherwise).
    db.execute("DROP TABLE IF EXISTS job_tally")
    for trigger in ("insert", "delete", "update"):
        db.execute(f"DROP TRIGGER IF EXISTS job_tally_{trigger}")
    # A removed parameter's column is dropped (SQLite 3.35+), not left behind: nothing would
    # keep its values up to date, and a column of a version 1 file has no default, so every
    # insert leaving it out would fail.
    for column in needed.removed:
        db.execute(f"ALTER TABLE job DROP COLUMN {column}")
    for p in needed.added:
        # SQLite adds a NOT NULL column only with a default: the value of an absent element
        missing = MISSING_DATE if p.type == "date" else f"'{MISSING_TOKEN}'"
        db.execute(
            f"ALTER TABLE job ADD COLUMN {p.column} {_column_type(p.type)} NOT NULL "
            f"DEFAULT {missing}"
        )
    if needed.added:
        _backfill(db, needed.added)
    _create_tally(db, tokens)
    if tokens:
        names = ", ".join(tokens)
        db.execute(
            f"INSERT INTO job_tally ({names}, n) SELECT {names}, count(*) FROM job GROUP BY {names}"
        )


def _backfill(db: sqlite3.Connection, added: Sequence[SearchParameter]) -> None:
    """Each live job's values of the added parameters, from its stored JSON (deleted versions
    are in job_version only, which has no search columns)."""
    columns = [p.column for p in added]
    update = f"UPDATE job SET {', '.join(f'{c} = ?' for c in columns)} WHERE id = ?"
    last = ""  # every id sorts after it
    while rows := db.execute(
        "SELECT id, resource FROM job WHERE id > ? ORDER BY id LIMIT ?", (last, BACKFILL_BATCH)
    ).fetchall():
        updates = []
        for job_id, blob in rows:
            values = job_values(job_id, orjson.loads(blob), added)
            updates.append((*(values[c] for c in columns), job_id))
        db.executemany(update, updates)
        last = rows[-1][0]


def _recorded(db: sqlite3.Connection) -> tuple[Indexed, ...]:
    rows = db.execute("SELECT name, column_name, type, path FROM schema_parameter")
    return tuple(
        Indexed(name, column, kind, tuple(path.split("."))) for name, column, kind, path in rows
    )


def _write_record(db: sqlite3.Connection, record: Sequence[Indexed]) -> None:
    db.executemany(
        "INSERT INTO schema_parameter (column_name, name, type, path) VALUES (?, ?, ?, ?)",
        [(r.column, r.name, r.type, ".".join(r.path)) for r in record],
    )


def _indexes(db: sqlite3.Connection) -> dict[str, set[str]]:
    """This module's indexes on job and their columns (SQLite's own, for the primary key,
    are not listed)."""
    indexes: dict[str, set[str]] = {}
    for name, column in db.execute(
        "SELECT m.name, c.name FROM sqlite_master m, pragma_index_info(m.name) c "
        "WHERE m.type = 'index' AND m.tbl_name = 'job' AND substr(m.name, 1, 7) = 'ix_job_'"
    ):
        indexes.setdefault(name, set()).add(column)
    return indexes


def _create_tally(db: sqlite3.Connection, tokens: tuple[str, ...]) -> None:
    """job_tally: live jobs per combination of token values, kept by triggers, so counting a
    token search reads a few rows instead of every match (a search answers with its total).
    Without token parameters there is nothing to key it by: counts then read `job`."""
    if not tokens:
        return
    names = ", ".join(tokens)
    key = ", ".join(f"{c} TEXT NOT NULL" for c in tokens)
    db.execute(f"CREATE TABLE job_tally ({key}, n INTEGER NOT NULL, PRIMARY KEY ({names}))")

    def same(row: str) -> str:
        return " AND ".join(f"{c} = {row}.{c}" for c in tokens)

    add = (
        f"INSERT INTO job_tally ({names}, n) VALUES "
        f"({', '.join('NEW.' + c for c in tokens)}, 1) "
        f"ON CONFLICT ({names}) DO UPDATE SET n = n + 1;"
    )
    remove = f"UPDATE job_tally SET n = n - 1 WHERE {same('OLD')};"
    db.execute(f"CREATE TRIGGER job_tally_insert AFTER INSERT ON job BEGIN {add} END")
    db.execute(f"CREATE TRIGGER job_tally_delete AFTER DELETE ON job BEGIN {remove} END")
    db.execute(
        f"CREATE TRIGGER job_tally_update AFTER UPDATE OF {names} ON job BEGIN {remove} {add} END"
    )


def index_keys(
    parameters: Sequence[SearchParameter] = SEARCH_PARAMETERS,
) -> list[tuple[tuple[str, bool], ...]]:
    """(column, descending) per index: every sort column in both directions, alone and behind
    each token filter, and one owner's newest jobs; each ending in the unique id so the
    tie-breaker is served too."""
    keys: list[tuple[tuple[str, bool], ...]] = []
    for token in (None, *token_columns(parameters)):
        for column in sort_columns(parameters):
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
