"""The store as one caller sees it: its own jobs only, unless it holds the admin scope.

Another owner's job is hidden exactly like a missing one, so handlers answer 404 without
knowing why: every read passes the owner to the store, which filters in the query itself
(get/history/vread find nothing, search and count match nothing), so that another owner's
id and an unknown one take the same time as well. Jobs with no owner (loaded from files)
are seen by admins only.
"""

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..resources.outcome import FhirError, Issue
from ..search.query import HistoryQuery, JobQuery
from ..storage.base import Change, JobRecord, JobStore, Usage, Write
from .quotas import OwnerQuota
from .tokens import Principal


class IdTaken(FhirError):
    """A PUT names an id another owner's job uses (duplicate, without saying whose)."""

    def __init__(self, job_id: str) -> None:
        message = f"AsyncJob/{job_id} cannot be written with this token; use another id"
        super().__init__([Issue("duplicate", message)])


class OwnedJobStore:
    """A JobStore view limited to one owner's jobs (a JobStore itself)."""

    def __init__(
        self,
        store: JobStore,
        owner: str | None,
        quota: OwnerQuota | None = None,
        scopes: frozenset[str] = frozenset(),
    ) -> None:
        self.store = store
        self.owner = owner
        # The caller's scopes, for writes whose rules depend on what it may read (a
        # Subscription's criteria).
        self.scopes = scopes
        self.quota = quota  # what the owner may store (None: no limit)
        # The store's filter: no owner matches "" (jobs loaded without one included).
        self._owner = owner or ""

    def _sees(self, record: JobRecord | None) -> bool:
        return record is not None and record.owner is not None and record.owner == self.owner

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        await self.store.close()

    async def ping(self) -> None:
        await self.store.ping()

    # A JobStore's reads take an owner too: asked for another owner's, this view sees nothing.

    async def get(self, job_id: str, *, owner: str | None = None) -> JobRecord | None:
        if owner not in (None, self._owner):
            return None
        return await self.store.get(job_id, owner=self._owner)

    async def get_version(
        self, job_id: str, version: int, *, owner: str | None = None
    ) -> JobRecord | None:
        if owner not in (None, self._owner):
            return None
        return await self.store.get_version(job_id, version, owner=self._owner)

    async def history(self, job_id: str, *, owner: str | None = None) -> list[JobRecord]:
        if owner not in (None, self._owner):
            return []
        return await self.store.history(job_id, owner=self._owner)

    async def search(self, query: JobQuery) -> list[JobRecord]:
        return await self.store.search(replace(query, owner=self._owner))

    async def count(self, query: JobQuery) -> int:
        return await self.store.count(replace(query, owner=self._owner))

    async def versions(self, query: HistoryQuery) -> list[JobRecord]:
        return await self.store.versions(replace(query, owner=self.owner or ""))

    async def save(
        self,
        resource: dict[str, Any],
        *,
        expected_version: int,
        owner: str | None = None,
        method: str | None = None,
    ) -> JobRecord:
        current = await self.store.get(resource["id"])
        if current is not None and not self._sees(current):
            raise IdTaken(resource["id"])
        holder = owner if owner is not None else self.owner
        if self.quota is not None and holder is not None:
            await self.quota.check(self.store, holder, resource, current, expected_version + 1)
        return await self.store.save(
            resource, expected_version=expected_version, owner=owner, method=method
        )

    async def delete(self, job_id: str, *, expected_version: int) -> JobRecord:
        if await self.get(job_id) is None:
            raise FhirError.of("not-found", f"AsyncJob/{job_id} is not known")
        return await self.store.delete(job_id, expected_version=expected_version)

    async def usage(self, owner: str) -> Usage:
        return await self.store.usage(owner) if owner == self.owner else Usage(0, 0)

    async def save_many(self, writes: Sequence[Write]) -> list[JobRecord]:
        for write in writes:
            current = await self.store.get(write.job_id)
            if current is not None and not self._sees(current):
                raise IdTaken(write.job_id)
            holder = write.owner if write.owner is not None else self.owner
            if self.quota is not None and holder is not None and write.resource is not None:
                version = write.expected_version + 1
                await self.quota.check(self.store, holder, write.resource, current, version)
        return await self.store.save_many(writes)

    async def purge(self, *, before: str, statuses: frozenset[str]) -> int:
        raise PermissionError("purge is an operator's command, not a caller's")

    # The feed holds every owner's changes: the server's notifications read it, never a caller.

    async def changes(self, after: int, limit: int) -> list[Change]:
        raise PermissionError("the change feed is the server's, not a caller's")

    async def feed_position(self) -> int:
        raise PermissionError("the change feed is the server's, not a caller's")

    async def position_before(self, at_ms: int) -> int:
        raise PermissionError("the change feed is the server's, not a caller's")


def visible_store(
    store: JobStore, principal: Principal | None, quota: OwnerQuota | None = None
) -> JobStore:
    """The whole store for admins (and with auth off), else the caller's own jobs, its
    writes held to the quota."""
    if principal is None or principal.admin:
        return store
    return OwnedJobStore(store, principal.owner, quota, principal.scopes)
