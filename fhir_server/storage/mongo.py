"""JobStore on MongoDB through motor (or anything motor-compatible, e.g. mongomock-motor)."""

from collections.abc import Callable, Sequence
from typing import Any

import orjson
from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateMany
from pymongo.errors import (
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WTimeoutError,
)

from ..config import DEFAULT_MAX_RESOURCE_BYTES
from ..resources.asyncjob import ASYNC_JOB
from ..resources.instants import instant_of_ms, now_instant, parse_instant_ms
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
from .base import (
    Change,
    JobRecord,
    SchemaTooNew,
    StoreMigrationFailed,
    StoreUnavailable,
    TransactionsUnavailable,
    Usage,
    VersionConflict,
    Write,
    index_values,
    stamp,
    stored_json,
)
from .guard import unavailable_on
from .mongo_schema import field as _field
from .mongo_schema import prepare, prepare_history
from .schema import REMEDY, cause, token_columns


def history_collection(kind: ResourceKind) -> str:
    return f"{kind.storage_name}_history"


# AsyncJob's collections
CURRENT = ASYNC_JOB.storage_name
HISTORY = history_collection(ASYNC_JOB)
_PROJECTION = {"resource": 1, "version": 1, "owner": 1, "size": 1}
MEASURE_BATCH = 500  # sizes written at a time when opening a database stored without them
# The database is unreachable or too slow (ConnectionFailure covers AutoReconnect,
# NetworkTimeout, ServerSelectionTimeoutError, NotPrimaryError and pool wait timeouts).
TRANSIENT_ERRORS = (ConnectionFailure, ExecutionTimeout, WTimeoutError)


@unavailable_on(*TRANSIENT_ERRORS)
class MongoJobStore:
    """One kind's resources: the live ones in a collection named from the kind (one document
    each), every version in its `_history` one. Stores of other kinds may share the database."""

    def __init__(
        self,
        database: Any,
        kind: ResourceKind = ASYNC_JOB,
        *,
        max_resource_bytes: int = DEFAULT_MAX_RESOURCE_BYTES,
    ) -> None:
        self._db = database
        self.kind = kind
        self.max_resource_bytes = max_resource_bytes
        self._current = database[kind.storage_name]
        self._history = database[history_collection(kind)]
        # The change feed: a document per version written or job purged, its _id the
        # position, taken from a counter (`_feed_counter`). Two writers may take positions 5
        # and 6 and insert 6 first: the feed has a hole for a moment, which a tailer waits
        # out (notifications/feed.py) rather than pass.
        self._feed = database[f"{kind.storage_name}_change"]
        self._counter = database[f"{kind.storage_name}_feed_counter"]
        # The search parameters this store indexes (a field each); opening migrates a
        # collection built for others (mongo_schema.py).
        self.parameters = kind.search_parameters
        self._tokens = token_columns(self.parameters)

    async def open(self) -> None:
        await prepare_history(self._history)
        # The type's history, newest first: all versions, and one owner's. A history document
        # written before methods were recorded has no method or created field (JobRecord then
        # tells them from the version).
        await self._history.create_index(_HISTORY_ORDER)
        await self._history.create_index([("owner", ASCENDING), *_HISTORY_ORDER])
        await self._feed.create_index("at")
        try:
            await prepare(self._db, self.kind.storage_name, self.parameters)
            await _measure(self._current)
        except (*TRANSIENT_ERRORS, SchemaTooNew):
            raise
        except Exception as exc:
            raise StoreMigrationFailed(
                f"MongoDB database {self._db.name}: bringing it to this fhir-server's search "
                f"parameters failed: {cause(exc)}. Its schema record is left as "
                f"it was, so the next start does it again from the beginning. {REMEDY}"
            ) from exc

    async def close(self) -> None:
        client = getattr(self._db, "client", None)
        if client is not None and hasattr(client, "close"):
            client.close()

    async def ping(self) -> None:
        try:
            await self._db.command("ping")
        except PyMongoError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def get(self, job_id: str, *, owner: str | None = None) -> JobRecord | None:
        if owner is None:
            doc = await self._current.find_one({"_id": job_id}, _PROJECTION)
            return _record(doc) if doc is not None else await self._newest_version(job_id)
        # Another owner's job and an unknown id: the same two queries, whose answers hold no
        # resource (the owner is in the filter, the newest version's owner comes from an index).
        doc = await self._current.find_one({"_id": job_id, "owner": owner}, _PROJECTION)
        if doc is not None:
            return _record(doc)
        newest = await self._newest_owner(job_id)
        if newest is None or newest.get("owner") != owner:
            return None
        return await self.get_version(job_id, newest["version"])  # the owner deleted it

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """The newest version of each id ever used, as get has it: two queries, not one per
        id (the history's newest version for those without a live document)."""
        ids = list(job_ids)
        found: dict[str, JobRecord] = {}
        async for doc in self._current.find({"_id": {"$in": ids}}, _PROJECTION):
            found[doc["_id"]] = _record(doc)
        rest = [i for i in ids if i not in found]
        if rest:
            versions = self._history.find({"job": {"$in": rest}}, {"resource": 0})
            async for doc in versions.sort("version", DESCENDING):
                if doc["job"] not in found:
                    found[doc["job"]] = _history_record(doc)
        return found

    async def get_version(
        self, job_id: str, version: int, *, owner: str | None = None
    ) -> JobRecord | None:
        if owner is not None and not await self._owns(job_id, owner):
            return None
        doc = await self._history.find_one({"_id": f"{job_id}/{version}"})
        return None if doc is None else _history_record(doc)

    async def history(self, job_id: str, *, owner: str | None = None) -> list[JobRecord]:
        if owner is not None and not await self._owns(job_id, owner):
            return []
        cursor = self._history.find({"job": job_id}).sort("version", DESCENDING)
        return [_history_record(doc) async for doc in cursor]

    async def versions(self, query: HistoryQuery) -> list[JobRecord]:
        clauses: list[dict[str, Any]] = []
        if query.owner is not None:
            clauses.append({"owner": query.owner})
        if query.since is not None:
            clauses.append({"last_updated": {"$gte": query.since}})
        forward = query.cursor is None or query.cursor.forward
        if query.cursor is not None:
            clauses.append(_history_keyset(query))
        filters = {"$and": clauses} if clauses else {}
        order = [(f, d if forward else -d) for f, d in _HISTORY_ORDER]
        cursor = self._history.find(filters).sort(order).limit(query.limit)
        if query.max_bytes is None:
            return [_history_record(doc) async for doc in cursor]
        return await _read_within(cursor, ReadBudget(query.max_bytes), _history_record)

    async def _owns(self, job_id: str, owner: str) -> bool:
        """Whether the job's newest version is the owner's: one query either way."""
        newest = await self._newest_owner(job_id)
        return newest is not None and newest.get("owner") == owner

    async def _newest_owner(self, job_id: str) -> dict[str, Any] | None:
        """The newest version's number and owner, read from the history index alone."""
        return await self._history.find_one(
            {"job": job_id},
            {"_id": 0, "version": 1, "owner": 1},
            sort=[("version", DESCENDING)],
        )

    async def search(self, query: JobQuery) -> list[JobRecord]:
        sort = full_sort(query.sort)
        forward = query.cursor is None or query.cursor.forward
        filters = _filter(query, self._tokens)
        if query.cursor is not None:
            filters = {"$and": [filters, _keyset(query.sort, query.cursor)]}
        order = [
            (_field(k.column), DESCENDING if k.descending == forward else ASCENDING) for k in sort
        ]
        cursor = self._current.find(filters, _PROJECTION).sort(order)
        if query.offset:
            cursor = cursor.skip(query.offset)
        cursor = cursor.limit(query.limit)
        if query.max_bytes is None:
            return [_record(doc) async for doc in cursor]
        return await _read_within(cursor, ReadBudget(query.max_bytes), _record)

    async def count(self, query: JobQuery) -> int:
        return int(await self._current.count_documents(_filter(query, self._tokens)))

    async def usage(self, owner: str) -> Usage:
        """Summed over the owner's live documents (served by the owner index)."""
        group = {"_id": None, "jobs": {"$sum": 1}, "bytes": {"$sum": "$size"}}
        pipeline = [{"$match": {"owner": owner}}, {"$group": group}]
        async for total in self._current.aggregate(pipeline):
            return Usage(int(total["jobs"]), int(total["bytes"]))
        return Usage(0, 0)

    async def save(
        self,
        resource: dict[str, Any],
        *,
        expected_version: int,
        owner: str | None = None,
        method: str | None = None,
    ) -> JobRecord:
        job_id = resource["id"]
        version = expected_version + 1
        stamped = stamp(resource, version, now_instant())
        # The size of its canonical JSON, as SQLite stores it: the limit, pages' byte budget
        # and the owner's bytes stored count it.
        size = len(stored_json(stamped, self.max_resource_bytes))
        doc = {"_id": job_id, "version": version, "owner": owner, "resource": stamped}
        doc["size"] = size
        values = index_values(stamped, self.parameters)
        doc.update((_field(c), v) for c, v in values.items() if c != "id")
        replaced = await self._current.replace_one(
            {"_id": job_id, "version": expected_version}, doc
        )
        # No live document of the expected version: the job is new (or deleted).
        created = replaced.matched_count == 0
        if created:
            await self._insert_new(job_id, expected_version, doc)
        last_updated = stamped["meta"]["lastUpdated"]
        record = JobRecord(
            job_id, version, last_updated, stamped, owner, size=size, method=method, created=created
        )
        await self._append_history(record, method, created)
        await self._record_change(record, await self._take_positions(1))
        return record

    async def delete(self, job_id: str, *, expected_version: int) -> JobRecord:
        current = await self._current.find_one({"_id": job_id}, {"owner": 1})
        result = await self._current.delete_one({"_id": job_id, "version": expected_version})
        if result.deleted_count == 0:
            newest = await self.get(job_id)
            raise VersionConflict(job_id, expected_version, newest.version if newest else None)
        owner = current.get("owner") if current else None
        record = JobRecord(
            job_id, expected_version + 1, now_instant(), None, owner, method="DELETE", created=False
        )
        await self._append_history(record, "DELETE", False)
        await self._record_change(record, await self._take_positions(1))
        return record

    async def _take_positions(self, count: int) -> int:
        """Reserve `count` feed positions; the first of them."""
        doc = await self._counter.find_one_and_update(
            {"_id": "position"},
            {"$inc": {"n": count}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return int(doc["n"]) - count + 1

    async def _record_change(
        self, record: JobRecord, position: int, *, purged: bool = False, session: Any = None
    ) -> None:
        await self._feed.insert_one(
            {
                "_id": position,
                "job": record.id,
                "version": record.version,
                "owner": record.owner,
                "deleted": record.deleted,
                "purged": purged,
                "at": parse_instant_ms(record.last_updated),
            },
            session=session,
        )

    async def changes(self, after: int, limit: int) -> list[Change]:
        docs = [
            doc async for doc in self._feed.find({"_id": {"$gt": after}}).sort("_id").limit(limit)
        ]
        # The versions, and each deletion's last live one, in one read.
        wanted = [f"{d['job']}/{d['version']}" for d in docs if not d["purged"]]
        wanted += [f"{d['job']}/{d['version'] - 1}" for d in docs if d["deleted"]]
        bodies = {}
        if wanted:
            found = self._history.find({"_id": {"$in": wanted}}, {"resource": 1})
            bodies = {doc["_id"]: doc.get("resource") async for doc in found}
        resource_type = self.kind.type
        return [
            Change(
                doc["_id"],
                resource_type,
                doc["job"],
                doc["version"],
                doc.get("owner"),
                deleted=doc["deleted"],
                purged=doc["purged"],
                stored=None if doc["deleted"] else bodies.get(f"{doc['job']}/{doc['version']}"),
                previous=bodies.get(f"{doc['job']}/{doc['version'] - 1}")
                if doc["deleted"]
                else None,
            )
            for doc in docs
        ]

    async def feed_position(self) -> int:
        doc = await self._counter.find_one({"_id": "position"})
        return 0 if doc is None else int(doc["n"])

    async def position_before(self, at_ms: int) -> int:
        first = await self._feed.find_one({"at": {"$gte": at_ms}}, sort=[("_id", 1)])
        return int(first["_id"]) - 1 if first is not None else await self.feed_position()

    async def _record_purge(self, job: str, version: int, owner: str | None) -> None:
        gone = JobRecord(job, version, now_instant(), None, owner)
        await self._record_change(gone, await self._take_positions(1), purged=True)

    async def purge(self, *, before: str, statuses: frozenset[str]) -> int:
        cutoff = parse_instant_ms(before)
        removed = 0
        # The feed forgets what is older than what is kept.
        await self._feed.delete_many({"at": {"$lt": cutoff}})
        live = self._current.find(
            {"status": {"$in": sorted(statuses)}, "last_updated": {"$lt": cutoff}},
            {"version": 1, "owner": 1},
        )
        async for doc in live:
            # Conditional on the version seen: a job updated meanwhile is kept.
            gone = await self._current.delete_one({"_id": doc["_id"], "version": doc["version"]})
            if gone.deleted_count:
                await self._history.delete_many({"job": doc["_id"]})
                await self._record_purge(doc["_id"], doc["version"], doc.get("owner"))
                removed += 1
        deletions = self._history.find(
            {"resource": None, "last_updated": {"$lt": instant_of_ms(cutoff)}},
            {"job": 1, "version": 1, "owner": 1},
        )
        async for doc in deletions:
            newest = await self._newest_version(doc["job"])
            if (
                newest is not None
                and newest.deleted
                and newest.version == doc["version"]
                and parse_instant_ms(newest.last_updated) < cutoff
                and await self._current.count_documents({"_id": doc["job"]}) == 0
            ):
                await self._history.delete_many({"job": doc["job"]})
                await self._record_purge(doc["job"], doc["version"], doc.get("owner"))
                removed += 1
        return removed

    async def _insert_new(self, job_id: str, expected_version: int, doc: dict[str, Any]) -> None:
        """Create the live document: the id is new, or deleted at expected_version."""
        newest = await self.get(job_id)
        actual = newest.version if newest else 0
        if actual != expected_version or (newest is not None and not newest.deleted):
            raise VersionConflict(job_id, expected_version, actual)
        try:
            await self._current.insert_one(doc)
        except DuplicateKeyError as exc:
            newest = await self.get(job_id)
            raise VersionConflict(
                job_id, expected_version, newest.version if newest else None
            ) from exc

    async def _newest_version(self, job_id: str) -> JobRecord | None:
        doc = await self._history.find_one({"job": job_id}, sort=[("version", DESCENDING)])
        return None if doc is None else _history_record(doc)

    async def _append_history(self, record: JobRecord, method: str | None, created: bool) -> None:
        await self._history.replace_one(
            {"_id": f"{record.id}/{record.version}"},
            _history_document(record, method, created),
            upsert=True,
        )

    async def save_many(self, writes: Sequence[Write]) -> list[JobRecord]:
        """All writes in one multi-document transaction (a replica set or sharded cluster
        offers them; a standalone server or mongomock does not: TransactionsUnavailable,
        and nothing was written). The client's write concern applies to the commit."""
        client = self._db.client
        try:
            session = await client.start_session()
        except NotImplementedError as exc:  # mongomock: no sessions at all
            raise TransactionsUnavailable(_NO_TRANSACTIONS) from exc
        last_updated = now_instant()
        # Taken outside the transaction (a counter every transaction wrote would make them
        # conflict); one that aborts leaves a hole in the feed, which tailers wait out.
        position = await self._take_positions(len(writes))
        try:
            async with session, session.start_transaction():
                return [
                    await self._write_one(w, last_updated, session, position + n)
                    for n, w in enumerate(writes)
                ]
        except OperationFailure as exc:
            if exc.code == _ILLEGAL_OPERATION:  # "only allowed on a replica set member"
                raise TransactionsUnavailable(_NO_TRANSACTIONS) from exc
            if exc.has_error_label("TransientTransactionError"):
                # Another transaction wrote one of these jobs first: nothing was stored.
                first = writes[0]
                raise VersionConflict(first.job_id, first.expected_version, None) from exc
            raise

    async def _write_one(
        self, write: Write, last_updated: str, session: Any, position: int
    ) -> JobRecord:
        """save's or delete's checks and documents for one write, inside the transaction."""
        job_id, expected, version = write.job_id, write.expected_version, write.expected_version + 1
        newest = await self._history.find_one(
            {"job": job_id}, {"version": 1}, sort=[("version", DESCENDING)], session=session
        )
        actual = 0 if newest is None else int(newest["version"])
        live = await self._current.find_one({"_id": job_id}, {"owner": 1}, session=session)
        method: str | None
        if write.resource is None:
            if live is None or actual != expected:
                raise VersionConflict(job_id, expected, actual or None)
            await self._current.delete_one({"_id": job_id}, session=session)
            record = JobRecord(
                job_id,
                version,
                last_updated,
                None,
                live.get("owner"),
                method="DELETE",
                created=False,
            )
            method, created = "DELETE", False
        else:
            if actual != expected:
                raise VersionConflict(job_id, expected, actual)
            stamped = stamp(write.resource, version, last_updated)
            size = len(stored_json(stamped, self.max_resource_bytes))
            doc: dict[str, Any] = {
                "_id": job_id,
                "version": version,
                "owner": write.owner,
                "resource": stamped,
                "size": size,
            }
            values = index_values(stamped, self.parameters)
            doc.update((_field(c), v) for c, v in values.items() if c != "id")
            await self._current.replace_one({"_id": job_id}, doc, upsert=True, session=session)
            method, created = write.method, live is None
            record = JobRecord(
                job_id,
                version,
                last_updated,
                stamped,
                write.owner,
                size=size,
                method=method,
                created=created,
            )
        await self._history.insert_one(
            {"_id": f"{job_id}/{version}", **_history_document(record, method, created)},
            session=session,
        )
        await self._record_change(record, position, session=session)
        return record


_ILLEGAL_OPERATION = 20
_NO_TRANSACTIONS = (
    "this MongoDB deployment cannot run multi-document transactions (a replica set or a "
    "sharded cluster can; a standalone server cannot)"
)


def _history_document(record: JobRecord, method: str | None, created: bool) -> dict[str, Any]:
    return {
        "job": record.id,
        "version": record.version,
        "last_updated": record.last_updated,
        "owner": record.owner,
        "resource": record.resource,
        "method": method,
        "created": created,
    }


async def _read_within(
    cursor: Any, budget: ReadBudget, record_of: Callable[[dict[str, Any]], JobRecord]
) -> list[JobRecord]:
    """The records of a page until the budget stops the reading (the cursor is then closed:
    the documents it would fetch next are not read)."""
    records = []
    async for doc in cursor:
        record = record_of(doc)
        records.append(record)
        if budget.cut((record.size,)) is not None:
            await cursor.close()
            break
    return records


async def _measure(jobs: Any) -> None:
    """The `size` of each live job stored before sizes were kept (the per-owner byte quota
    and the page budget read it); each update applies only to the version it measured."""
    batch: list[UpdateMany] = []
    async for doc in jobs.find({"size": {"$exists": False}}, {"resource": 1, "version": 1}):
        size = len(orjson.dumps(doc["resource"]))
        # UpdateMany of one document, as in mongo_schema's backfill (mongomock's bulk_write).
        batch.append(
            UpdateMany({"_id": doc["_id"], "version": doc["version"]}, {"$set": {"size": size}})
        )
        if len(batch) == MEASURE_BATCH:
            await jobs.bulk_write(batch, ordered=False)
            batch = []
    if batch:
        await jobs.bulk_write(batch, ordered=False)


def _record(doc: dict[str, Any]) -> JobRecord:
    resource = doc["resource"]
    return JobRecord(
        doc["_id"],
        doc["version"],
        resource["meta"]["lastUpdated"],
        resource,
        doc.get("owner"),
        size=doc.get("size"),  # else (a version stored before sizes were kept) measured now
    )


def _history_record(doc: dict[str, Any]) -> JobRecord:
    return JobRecord(
        doc["job"],
        doc["version"],
        doc["last_updated"],
        doc.get("resource"),
        doc.get("owner"),
        method=doc.get("method"),
        created=doc.get("created"),
    )


# The history documents' fields in HISTORY_SORT (the job's id is `job` there).
_HISTORY_ORDER = [("last_updated", DESCENDING), ("job", DESCENDING), ("version", DESCENDING)]


def _history_keyset(query: HistoryQuery) -> dict[str, Any]:
    """Versions strictly after (forward: older than) or before the cursor in HISTORY_SORT."""
    assert query.cursor is not None
    values = cursor_position(query.sort, query.cursor)
    op = "$lt" if query.cursor.forward else "$gt"
    fields = [f for f, _ in _HISTORY_ORDER]
    branches = []
    for i, name in enumerate(fields):
        branch: dict[str, Any] = {fields[j]: values[j] for j in range(i)}
        branch[name] = {op: values[i]}
        branches.append(branch)
    return {"$or": branches}


def _condition(condition: Condition, tokens: tuple[str, ...]) -> dict[str, Any]:
    name = _field(condition.column)
    if isinstance(condition, TokenMatch):
        values = sorted(condition.values)
        return {name: {"$nin" if condition.negate else "$in": values}}
    if isinstance(condition, Missing):
        missing = MISSING_TOKEN if condition.column in tokens else MISSING_DATE
        return {name: missing if condition.missing else {"$ne": missing}}
    return _date_condition(name, condition)


def _date_condition(name: str, condition: DateRange) -> dict[str, Any]:
    if condition.negate:
        outside: list[dict[str, Any]] = []
        if condition.lower is not None:
            outside.append({name: {"$gt": MISSING_DATE, "$lt": condition.lower}})
        if condition.upper is not None:
            outside.append({name: {"$gte": condition.upper}})
        return {"$or": outside} if outside else {name: {"$in": []}}
    bounds: dict[str, int] = {"$gt": MISSING_DATE}
    if condition.lower is not None:
        bounds = {"$gte": condition.lower}
    if condition.upper is not None:
        bounds["$lt"] = condition.upper
    return {name: bounds}


def _filter(query: JobQuery, tokens: tuple[str, ...]) -> dict[str, Any]:
    clauses: list[dict[str, Any]] = []
    for any_of in query.where:
        parts = [_condition(c, tokens) for c in any_of]
        clauses.append(parts[0] if len(parts) == 1 else {"$or": parts})
    if query.owner is not None:
        clauses.append({"owner": query.owner})
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _keyset(query_sort: tuple[SortKey, ...], cursor: Cursor) -> dict[str, Any]:
    """Rows strictly after (forward) or before (backward) the cursor in the sort order."""
    sort, values = full_sort(query_sort), cursor_position(query_sort, cursor)
    branches = []
    for i, key in enumerate(sort):
        branch: dict[str, Any] = {_field(k.column): values[j] for j, k in enumerate(sort[:i])}
        less = key.descending == cursor.forward
        branch[_field(key.column)] = {"$lt" if less else "$gt": values[i]}
        branches.append(branch)
    return {"$or": branches}
