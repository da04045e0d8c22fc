"""The JobStore protocol: the only door to the database, shared by every backend."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import orjson

from ..resources.asyncjob import ASYNC_JOB
from ..resources.instants import now_instant
from ..resources.kinds import ResourceKind, SearchParameter
from ..resources.outcome import FhirError, Issue
from ..search.matcher import index_value as _index_value
from ..search.query import HistoryQuery, JobQuery


class VersionConflict(Exception):
    """The stored version is not the one the write was conditional on."""

    def __init__(self, job_id: str, expected: int, actual: int | None) -> None:
        super().__init__(f"AsyncJob/{job_id}: expected version {expected}, found {actual}")
        self.job_id = job_id
        self.expected = expected
        self.actual = actual


class StoreUnavailable(Exception):
    """The database cannot be reached right now."""


class TransactionsUnavailable(Exception):
    """The database cannot run a multi-document transaction (MongoDB without a replica set,
    or a driver stand-in without sessions): save_many wrote nothing."""


class SchemaTooNew(Exception):
    """The data was written by a newer fhir-server than this one."""


class StoreMigrationFailed(Exception):
    """The database is reachable but could not be brought to this fhir-server's schema.

    Not a StoreUnavailable: trying again changes nothing, so the server must stop with the
    message (which says what to do) instead of answering 503 while it retries."""


class ResourceTooLarge(FhirError):
    """A write would store a resource larger than the store's limit (too-costly): it is
    refused, whichever way it came (REST, $cancel, the producer API, a loaded file)."""

    def __init__(self, resource: dict[str, Any], size: int, limit: int) -> None:
        name = resource.get("resourceType", "The resource")
        if resource.get("id"):
            name = f"{name}/{resource['id']}"
        message = f"{name} would be {size} bytes as stored; a resource may have {limit}"
        super().__init__([Issue("too-costly", message)])


def stored_json(resource: dict[str, Any], limit: int) -> bytes:
    """The canonical JSON of a stamped resource, ResourceTooLarge when it is over limit."""
    blob = orjson.dumps(resource)
    if len(blob) > limit:
        raise ResourceTooLarge(resource, len(blob), limit)
    return blob


def stored_size(resource: dict[str, Any], version: int) -> int:
    """The bytes resource would take when stored as `version`."""
    return len(orjson.dumps(stamp(resource, version, now_instant())))


def check_resource_size(resource: dict[str, Any], limit: int) -> None:
    """ResourceTooLarge when resource, stamped as a first version, is over limit: a check
    before anything is stored (a store checks every write again)."""
    # A loaded job may have no id yet: it gets a UUID, as long as this one.
    size = stored_size({"id": "0" * 36, **resource}, 1)
    if size > limit:
        raise ResourceTooLarge(resource, size, limit)


@dataclass(frozen=True, slots=True)
class Write:
    """One version for save_many: the resource to store (its id is `job_id`), or None to
    record a deletion; conditional on `expected_version` as save and delete are."""

    job_id: str
    expected_version: int
    resource: dict[str, Any] | None
    owner: str | None = None
    method: str | None = None


class JobRecord:
    """One version of a job. A deleted version carries no resource.

    A store that keeps the resource as JSON hands over those bytes (`stored`): they are parsed
    only when `resource` is first used, and responses embed them as they are (`body`), so a
    read or a page of search results is not parsed and serialized again.

    A version read from the history also says how it was written (`method`, `created`).
    """

    __slots__ = (
        "_created",
        "_indexed",
        "_last_updated",
        "_method",
        "_resource",
        "_stored",
        "id",
        "owner",
        "size",
        "version",
    )

    def __init__(
        self,
        id: str,
        version: int,
        last_updated: str | None,
        resource: dict[str, Any] | None,
        owner: str | None = None,
        *,
        stored: bytes | None = None,
        indexed: tuple[Mapping[str, Any], Any] | None = None,
        size: int | None = None,
        method: str | None = None,
        created: bool | None = None,
    ) -> None:
        self.id = id
        self.version = version
        self.owner = owner
        # None: not recorded (a version written before methods were, or by a caller that
        # named none); the properties then tell it from the version alone.
        self._method = method
        self._created = created
        self._last_updated = last_updated  # None: meta.lastUpdated of the stored resource
        self._resource = resource
        self._stored = stored
        # Index values the store read with the row: (where each column is, the row) so that
        # nothing is built per row; values[where[column]] is the column's value.
        self._indexed = indexed
        # The resource's bytes as stored (0 for a deletion): an attribute, not a property, so
        # that a page's weight is summed without a Python call per record.
        if size is None:
            if stored is not None:
                size = len(stored)
            elif resource is not None:
                size = len(orjson.dumps(resource))
            else:
                size = 0
        self.size = size

    @property
    def resource(self) -> dict[str, Any] | None:
        if self._resource is None and self._stored is not None:
            self._resource = orjson.loads(self._stored)
        return self._resource

    @property
    def last_updated(self) -> str:
        if self._last_updated is None:
            resource = self.resource
            assert resource is not None, "a deletion is stored with its time"
            self._last_updated = str(resource["meta"]["lastUpdated"])
        return self._last_updated

    def index_value(self, column: str) -> str | int:
        """The search parameter's value in `column`: as the store read it, else from the
        resource (which then has to be parsed)."""
        if self._indexed is not None:
            where, values = self._indexed
            if column in where:
                return values[where[column]]
        resource = self.resource
        assert resource is not None, "a deletion has no index values"
        return index_value(resource, column)

    @property
    def deleted(self) -> bool:
        return self._resource is None and self._stored is None

    @property
    def method(self) -> str:
        """How this version was written: POST (a create under an id the server chose), PUT
        (a create under the caller's id, or an update) or DELETE. Not recorded: DELETE for a
        deletion, POST for a first version, else PUT."""
        if self.deleted:
            return "DELETE"
        if self._method is not None:
            return self._method
        return "POST" if self.version == 1 else "PUT"

    @property
    def created(self) -> bool:
        """Whether this version created the resource (the id was new, or deleted). Not
        recorded: only a first version did."""
        if self.deleted:
            return False
        if self._created is not None:
            return self._created
        return self.version == 1

    @property
    def body(self) -> dict[str, Any] | orjson.Fragment | None:
        """The resource for orjson to serialize: the stored bytes when the store gave them."""
        if self._stored is not None:
            return orjson.Fragment(self._stored)
        return self._resource

    def _key(self) -> tuple[Any, ...]:
        return (self.id, self.version, self.last_updated, self.resource, self.owner)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobRecord) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable-looking content: not hashable

    def __repr__(self) -> str:
        return f"JobRecord(id={self.id!r}, version={self.version}, deleted={self.deleted})"


class Change:
    """One entry of a store's change feed: a version written (or a deletion), or a job the
    retention purge removed, at a `position` that only grows (each store its own sequence).

    `stored` is the version's resource (JSON bytes or a document; None for a deletion or a
    purge); a deletion also carries the last live version as `previous`, so criteria can be
    matched against what was deleted, though a notification of it has no body."""

    __slots__ = (
        "_previous",
        "_resource",
        "deleted",
        "id",
        "owner",
        "position",
        "purged",
        "type",
        "version",
    )

    def __init__(
        self,
        position: int,
        type: str,
        id: str,
        version: int,
        owner: str | None,
        *,
        deleted: bool = False,
        purged: bool = False,
        stored: bytes | dict[str, Any] | None = None,
        previous: bytes | dict[str, Any] | None = None,
    ) -> None:
        self.position = position
        self.type = type
        self.id = id
        self.version = version
        self.owner = owner
        self.deleted = deleted or purged
        self.purged = purged
        self._resource = stored
        self._previous = previous

    @property
    def resource(self) -> dict[str, Any] | None:
        """The version's resource (None for a deletion or a purge)."""
        if isinstance(self._resource, bytes):
            self._resource = orjson.loads(self._resource)
        return self._resource  # type: ignore[return-value]  # parsed above

    @property
    def matched(self) -> dict[str, Any] | None:
        """What criteria are matched against: the resource, or for a deletion the last live
        version (None when it is gone too, as after a purge)."""
        if not self.deleted:
            return self.resource
        if isinstance(self._previous, bytes):
            self._previous = orjson.loads(self._previous)
        return self._previous  # type: ignore[return-value]  # parsed above

    def __repr__(self) -> str:
        what = "purged" if self.purged else "deleted" if self.deleted else "written"
        return f"Change({self.position}, {self.type}/{self.id}/_history/{self.version} {what})"


class Usage(NamedTuple):
    """What one owner stores: its live resources and their bytes (canonical JSON)."""

    jobs: int
    bytes: int


class JobStore(Protocol):
    """What every backend provides. Writes are conditional on the stored version:
    `expected_version` 0 means "the job must not exist yet" (or is deleted at that version)."""

    async def open(self) -> None:
        """Connect and create the schema and indexes."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable if the database cannot answer."""

    async def get(self, job_id: str, *, owner: str | None = None) -> JobRecord | None:
        """The newest version (a deleted one included), or None if the id was never used.

        With `owner`, only if the newest version is that owner's: else None, at the cost of
        an unknown id (another owner's job must not take measurably more or less time)."""

    async def get_version(
        self, job_id: str, version: int, *, owner: str | None = None
    ) -> JobRecord | None:
        """That version; with `owner`, only if the job's newest version is that owner's."""

    async def history(self, job_id: str, *, owner: str | None = None) -> list[JobRecord]:
        """Every version, newest first; with `owner`, none unless the newest is that owner's."""

    async def search(self, query: JobQuery) -> list[JobRecord]:
        """Up to query.limit live jobs matching the query, in its sort order."""

    async def versions(self, query: HistoryQuery) -> list[JobRecord]:
        """Up to query.limit versions of every job (deletions included), newest first: by
        last update, then id, then version, all descending (reversed for a backward cursor);
        those written at or after query.since, of query.owner's jobs when it is set."""

    async def count(self, query: JobQuery) -> int: ...

    async def save(
        self,
        resource: dict[str, Any],
        *,
        expected_version: int,
        owner: str | None = None,
        method: str | None = None,
    ) -> JobRecord:
        """Store the next version of resource["id"]; raise VersionConflict if the newest
        stored version (0 if none) is not expected_version. `method` (POST or PUT) is the
        HTTP method that wrote it, recorded for the history."""

    async def delete(self, job_id: str, *, expected_version: int) -> JobRecord:
        """Record a deletion as the next version; raise VersionConflict like save."""

    async def usage(self, owner: str) -> Usage:
        """The owner's live resources and their bytes (for the per-owner quotas)."""

    async def save_many(self, writes: Sequence[Write]) -> list[JobRecord]:
        """Store every write, in order, in one database transaction: all or none. Each is
        conditional as save (a resource) or delete (None) is, and a later write may follow
        an earlier one of the same id; any VersionConflict stores nothing. Durable when it
        returns, as save. TransactionsUnavailable when the database cannot offer that."""

    async def purge(self, *, before: str, statuses: frozenset[str]) -> int:
        """Remove every trace (live job and all its versions) of each job whose newest version
        was written before the instant `before` and which is either live with a status in
        `statuses` or deleted. Return how many jobs were removed; afterwards get, get_version
        and history know nothing of them (a read is 404, not 410). Each removal is a `purged`
        change in the feed, and feed entries older than `before` are dropped."""

    async def changes(self, after: int, limit: int) -> list[Change]:
        """The change feed: up to `limit` changes with a position above `after`, in position
        order. Every write path records one change per version in the same transaction."""

    async def feed_position(self) -> int:
        """The newest position given out (0 for none): a tailer starting now begins there."""

    async def position_before(self, at_ms: int) -> int:
        """The position just before the first change written at or after the instant `at_ms`
        (epoch ms), or the newest if none was: reading from there misses nothing written
        since."""


@runtime_checkable
class ManyReads(Protocol):
    """A store (both backends; not the views of one, such as an owner's) that reads many ids
    at once: a bulk load checks a batch with it."""

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """The newest version of each of job_ids ever used (as get, without owner), by id;
        in a few queries, whatever their number."""


@runtime_checkable
class DeferredUpkeep(Protocol):
    """A store that can stop keeping its indexes and tallies up to date during a bulk load
    into an empty or small store, and make them again at once after it (SQLite)."""

    async def defer_upkeep(self, incoming: int) -> bool:
        """Before loading `incoming` resources: whether it stopped the upkeep."""

    async def restore_upkeep(self) -> None:
        """The indexes and tallies complete again (also done on the next open)."""


@runtime_checkable
class PreparedWrites(Protocol):
    """A store whose rows for new resources can be made ahead, in another process (a bulk
    load's forked worker), while it writes the last batch (SQLite)."""

    def prepare_new(self, resources: Sequence[dict[str, Any]], into: Path) -> Any:
        """The rows storing each resource (distinct ids) as its first version, stamped now,
        staged in a new file at `into` (the store's connections untouched); a picklable
        handle of them."""

    async def save_prepared(self, prepared: Any) -> int:
        """Write prepare_new's rows in one transaction, as save_many would have; how many.
        VersionConflict (nothing written) if any of the ids was ever used."""


# meta elements the server owns (stamp sets them): never part of "did the resource change?"
SERVER_META = ("versionId", "lastUpdated")


def without_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource as its writer sent it: without the elements stamp() sets."""
    meta = {k: v for k, v in resource.get("meta", {}).items() if k not in SERVER_META}
    rest = {k: v for k, v in resource.items() if k != "meta"}
    return {**rest, "meta": meta} if meta else rest


def stamp(resource: dict[str, Any], version: int, last_updated: str) -> dict[str, Any]:
    """The resource with the server-owned meta.versionId and meta.lastUpdated set."""
    server_meta = {"versionId": str(version), "lastUpdated": last_updated}
    # The three first, then the rest in their order (update keeps a key where it is).
    stamped = {"resourceType": resource["resourceType"], "id": resource["id"], "meta": None}
    stamped.update(resource)
    meta = resource.get("meta")
    stamped["meta"] = {**meta, **server_meta} if meta else server_meta
    return stamped


def index_values(
    resource: dict[str, Any],
    parameters: Iterable[SearchParameter] = ASYNC_JOB.search_parameters,
) -> dict[str, str | int]:
    """The value of each search parameter, by storage column, absent values as sentinels."""
    return {p.column: _index_value(resource, p) for p in parameters}


def index_value(resource: dict[str, Any], column: str, kind: ResourceKind = ASYNC_JOB) -> str | int:
    """The value of the search parameter stored in `column` (as index_values has it)."""
    return _index_value(resource, kind.parameters_by_column[column])
