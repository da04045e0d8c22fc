"""Writes collected for one transaction: a JobStore that answers reads with what has been
written through it so far and keeps those writes for one save_many.

The write logic of single requests (JobService and its status rules, ResourceWriter, the
ownership view) runs unchanged on top of it, entry by entry; `commit` then stores
everything in one database transaction, conditional on the versions the entries read.
"""

from collections.abc import Callable, Sequence
from typing import Any

from ..resources.instants import now_instant
from ..search.query import HistoryQuery, JobQuery
from .base import Change, JobRecord, JobStore, Usage, VersionConflict, Write, stamp


class StagedWrites:
    """A JobStore over `store` whose writes wait for commit(); `tags[i]` is what the caller
    set as `tag` (a Bundle entry's index) when writes[i] was made."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.writes: list[Write] = []
        self.tags: list[int] = []
        self.tag = 0
        self._newest: dict[str, JobRecord] = {}

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        await self.store.close()

    async def ping(self) -> None:
        await self.store.ping()

    async def usage(self, owner: str) -> Usage:
        """The store's (writes staged here are not counted until committed)."""
        return await self.store.usage(owner)

    async def get(self, job_id: str, *, owner: str | None = None) -> JobRecord | None:
        staged = self._newest.get(job_id)
        if staged is None:
            return await self.store.get(job_id, owner=owner)
        return staged if owner is None or staged.owner == owner else None

    # The writers read only the newest version; the rest is the store's as committed.

    async def get_version(
        self, job_id: str, version: int, *, owner: str | None = None
    ) -> JobRecord | None:
        return await self.store.get_version(job_id, version, owner=owner)

    async def history(self, job_id: str, *, owner: str | None = None) -> list[JobRecord]:
        return await self.store.history(job_id, owner=owner)

    async def search(self, query: JobQuery) -> list[JobRecord]:
        return await self.store.search(query)

    async def versions(self, query: HistoryQuery) -> list[JobRecord]:
        return await self.store.versions(query)

    async def count(self, query: JobQuery) -> int:
        return await self.store.count(query)

    async def save(
        self,
        resource: dict[str, Any],
        *,
        expected_version: int,
        owner: str | None = None,
        method: str | None = None,
    ) -> JobRecord:
        job_id = resource["id"]
        current = await self.get(job_id)
        actual = current.version if current is not None else 0
        if actual != expected_version:
            raise VersionConflict(job_id, expected_version, actual)
        version = expected_version + 1
        created = current is None or current.deleted
        record = JobRecord(
            job_id,
            version,
            None,
            stamp(resource, version, now_instant()),
            owner,
            method=method,
            created=created,
        )
        self._stage(Write(job_id, expected_version, resource, owner, method), record)
        return record

    async def delete(self, job_id: str, *, expected_version: int) -> JobRecord:
        current = await self.get(job_id)
        if current is None or current.deleted or current.version != expected_version:
            raise VersionConflict(job_id, expected_version, current.version if current else None)
        record = JobRecord(
            job_id,
            expected_version + 1,
            now_instant(),
            None,
            current.owner,
            method="DELETE",
            created=False,
        )
        self._stage(Write(job_id, expected_version, None, current.owner, "DELETE"), record)
        return record

    def _stage(self, write: Write, record: JobRecord) -> None:
        self.writes.append(write)
        self.tags.append(self.tag)
        self._newest[write.job_id] = record

    async def save_many(self, writes: Sequence[Write]) -> list[JobRecord]:
        raise NotImplementedError("a transaction's writes are not themselves transactions")

    async def purge(self, *, before: str, statuses: frozenset[str]) -> int:
        raise NotImplementedError("purge is not part of a transaction")

    async def changes(self, after: int, limit: int) -> list[Change]:
        raise NotImplementedError("the change feed is not part of a transaction")

    async def feed_position(self) -> int:
        raise NotImplementedError("the change feed is not part of a transaction")

    async def position_before(self, at_ms: int) -> int:
        raise NotImplementedError("the change feed is not part of a transaction")

    def tag_of(self, job_id: str) -> int:
        """The tag of the first staged write of job_id (the entry a conflict is about)."""
        for write, tag in zip(self.writes, self.tags, strict=True):
            if write.job_id == job_id:
                return tag
        return self.tag

    async def commit(
        self, rewrite: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    ) -> list[JobRecord]:
        """Store every staged write in one transaction (save_many); `rewrite`, if given,
        maps each staged resource first (references to ids the transaction assigned)."""
        writes = self.writes
        if rewrite is not None:
            writes = [
                w
                if w.resource is None
                else Write(w.job_id, w.expected_version, rewrite(w.resource), w.owner, w.method)
                for w in writes
            ]
        return await self.store.save_many(writes) if writes else []
