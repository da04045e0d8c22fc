"""The MongoDB database's schema: the index fields of the live jobs, their indexes, and
bringing an older database up to date.

Each live job's document carries a field per search parameter beside the resource. The
parameters they were computed for are recorded in collection `schema` (a document per
collection of live jobs); a database opened with another list is changed to fit it (see
storage/schema.py). MongoDB has no transaction spanning index builds and a collection-wide
update, so the record is written last: a migration that fails half-way is done again from the
start at the next open (each step may be repeated).
"""

from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateMany

from ..resources.asyncjob import SEARCH_PARAMETERS
from ..resources.kinds import SearchParameter
from .base import SchemaTooNew
from .schema import V1_PARAMETERS, Indexed, change, job_values, sort_columns, token_columns

SCHEMA = "schema"
SCHEMA_VERSION = 1  # of the record; a database recorded by a newer fhir-server is refused
BACKFILL_BATCH = 500  # updates sent at a time while filling a new field


def field(column: str) -> str:
    return "_id" if column == "id" else column


async def prepare(database: Any, current: str, parameters: Sequence[SearchParameter]) -> None:
    """Fit collection `current` (and its indexes) to `parameters`."""
    record = await database[SCHEMA].find_one({"_id": current})
    if record is not None and record["version"] > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"MongoDB database {database.name} was written by a newer fhir-server (schema "
            f"version {record['version']}; this one reads up to {SCHEMA_VERSION}). Upgrade "
            "fhir-server, or use another --mongodb-database."
        )
    recorded = V1_PARAMETERS if record is None else tuple(map(_indexed, record["parameters"]))
    needed = change(recorded, parameters)
    jobs = database[current]
    if needed.removed:
        # Their indexes, then their values: nothing would keep those up to date.
        for name, index in (await jobs.index_information()).items():
            if any(f in needed.removed for f, _ in index["key"]):
                await jobs.drop_index(name)
        await jobs.update_many({}, {"$unset": {c: "" for c in needed.removed}})
    if needed.added:
        await _backfill(jobs, needed.added)
    for key in index_keys(parameters):
        await jobs.create_index(key)
    if record is None or needed.record is not None:
        wanted = [Indexed.of(p) for p in parameters]
        document = {
            "version": SCHEMA_VERSION,
            "parameters": [
                {"name": r.name, "column": r.column, "type": r.type, "path": list(r.path)}
                for r in wanted
            ],
        }
        await database[SCHEMA].replace_one({"_id": current}, document, upsert=True)


# A job's versions, newest first, with their owner: the newest version's owner is then read
# from the index alone, as fast for another owner's job as for an unknown id (mongo.py).
HISTORY_INDEX = [("job", ASCENDING), ("version", DESCENDING), ("owner", ASCENDING)]
OLD_HISTORY_INDEX = "job_1_version_-1"  # before the owner was in it; the new one serves its use


async def prepare_history(history: Any) -> None:
    """The history collection's index (each step may be repeated)."""
    await history.create_index(HISTORY_INDEX)
    if OLD_HISTORY_INDEX in await history.index_information():
        await history.drop_index(OLD_HISTORY_INDEX)


def _indexed(recorded: dict[str, Any]) -> Indexed:
    return Indexed(recorded["name"], recorded["column"], recorded["type"], tuple(recorded["path"]))


async def _backfill(jobs: Any, added: Sequence[SearchParameter]) -> None:
    """Each live job's values of the added parameters, from its stored resource; an update
    only applies to the version it was computed from (a save meanwhile wrote them all)."""
    batch: list[UpdateMany] = []
    async for doc in jobs.find({}, {"resource": 1, "version": 1}).sort("_id", ASCENDING):
        values = job_values(doc["_id"], doc["resource"], added)
        # One document (by its _id) as UpdateOne would; mongomock's bulk_write takes no
        # UpdateOne from pymongo >= 4.11.
        only = {"_id": doc["_id"], "version": doc["version"]}
        batch.append(UpdateMany(only, {"$set": values}))
        if len(batch) == BACKFILL_BATCH:
            await jobs.bulk_write(batch, ordered=False)
            batch = []
    if batch:
        await jobs.bulk_write(batch, ordered=False)


def index_keys(
    parameters: Sequence[SearchParameter] = SEARCH_PARAMETERS,
) -> list[list[tuple[str, int]]]:
    """One index per sort, per token filter and sort, and for one owner's newest jobs; each
    ends in the unique _id."""
    sorts = [field(c) for c in sort_columns(parameters) if c != "id"]
    keys = [[(s, ASCENDING), ("_id", ASCENDING)] for s in sorts]
    keys += [
        [(t, ASCENDING), (s, ASCENDING), ("_id", ASCENDING)]
        for t in token_columns(parameters)
        for s in sorts
        if s != t
    ]
    # A caller without the admin scope always searches its own jobs: newest first by default.
    keys.append([("owner", ASCENDING), ("last_updated", DESCENDING), ("_id", DESCENDING)])
    return keys
