"""Per-owner quotas: how many live jobs, and how many bytes of them, one owner may store
(FHIR_SERVER_MAX_JOBS_PER_OWNER, FHIR_SERVER_MAX_BYTES_PER_OWNER; both off by default).

They hold an owner's own writes (through OwnedJobStore: REST creates and updates, kick-offs),
not an admin's: the services that run jobs write results into owners' jobs, and a job must be
able to complete even when its owner is at the quota. The counts come from the store (its
`usage`), so they hold across worker processes; the check is made before the write, so
writes of one owner that run at the same moment may each pass it and overshoot the quota
by at most their number.

Refused as 403 `forbidden`: the request is valid, but this owner may not store more until
it deletes jobs. Not 429 or 503, which invite retrying the same request, nor 413 (the
request is not too large).
"""

from dataclasses import dataclass
from typing import Any

from ..resources.outcome import FhirError, Issue
from ..storage.base import JobRecord, JobStore, stored_size


class QuotaExceeded(FhirError):
    def __init__(self, message: str) -> None:
        super().__init__([Issue("forbidden", f"{message}; delete jobs to store new ones")])


@dataclass(frozen=True, slots=True)
class OwnerQuota:
    max_jobs: int | None = None
    max_bytes: int | None = None

    @classmethod
    def of(cls, max_jobs: int | None, max_bytes: int | None) -> "OwnerQuota | None":
        """The quota, or None when neither limit is set (nothing to check)."""
        return None if max_jobs is None and max_bytes is None else cls(max_jobs, max_bytes)

    async def check(
        self,
        store: JobStore,
        owner: str,
        resource: dict[str, Any],
        current: JobRecord | None,
        version: int,
    ) -> None:
        """QuotaExceeded when storing resource (as `version`, over `current`) would take
        owner past a limit. Writes that add no job and no bytes are never refused."""
        live = current is not None and not current.deleted
        added = 0
        if self.max_bytes is not None:
            before = current.size if current is not None and live else 0
            added = stored_size(resource, version) - before
        adds_job = not live and self.max_jobs is not None
        if not adds_job and added <= 0:
            return
        usage = await store.usage(owner)
        if adds_job and self.max_jobs is not None and usage.jobs >= self.max_jobs:
            raise QuotaExceeded(f"This owner stores {usage.jobs} jobs, the most it may")
        if self.max_bytes is not None and added > 0 and usage.bytes + added > self.max_bytes:
            raise QuotaExceeded(
                f"This owner's jobs would take {usage.bytes + added} bytes; it may store "
                f"{self.max_bytes}"
            )
