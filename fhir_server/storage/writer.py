"""Writes for a resource kind without domain rules of its own: validated, versioned,
conditional on the version read (a kind with rules, like AsyncJob, has its own service)."""

import uuid
from typing import Any

from ..resources.kinds import ResourceKind
from ..resources.outcome import FhirError
from .base import JobRecord, JobStore, VersionConflict, without_server_meta

MAX_ATTEMPTS = 10


class ResourceWriter:
    """create, put and delete of one kind's resources through its store."""

    def __init__(self, kind: ResourceKind, store: JobStore) -> None:
        self.kind = kind
        self.store = store

    async def create(self, resource: dict[str, Any], *, owner: str | None) -> JobRecord:
        validated = self.kind.validate({**resource, "id": str(uuid.uuid4())})
        return await self.store.save(validated, expected_version=0, owner=owner, method="POST")

    async def put(
        self, resource: dict[str, Any], *, expected_version: int | None, owner: str | None
    ) -> tuple[JobRecord, bool]:
        """Create or update resource["id"]; True when it created it. A write that changes
        nothing stores nothing."""
        validated = self.kind.validate(resource)
        resource_id = validated["id"]
        for _ in range(MAX_ATTEMPTS):
            current = await self.store.get(resource_id)
            version = current.version if current else 0
            if expected_version is not None and expected_version != version:
                raise self._stale(resource_id, expected_version, version)
            if current is not None and current.resource is not None:
                if without_server_meta(current.resource) == without_server_meta(validated):
                    return current, False
                owner = current.owner  # an update keeps the resource's owner
            try:
                record = await self.store.save(
                    validated, expected_version=version, owner=owner, method="PUT"
                )
            except VersionConflict as conflict:
                if expected_version is not None:
                    raise self._stale(resource_id, expected_version, conflict.actual or 0) from None
                continue
            return record, current is None or current.resource is None
        raise FhirError.of("lock-error", f"{self.kind.type}/{resource_id} kept changing; retry")

    async def delete(self, resource_id: str, /, *, expected_version: int | None) -> JobRecord:
        for _ in range(MAX_ATTEMPTS):
            current = await self.store.get(resource_id)
            if current is None:
                raise FhirError.of("not-found", f"{self.kind.type}/{resource_id} is not known")
            if expected_version is not None and expected_version != current.version:
                raise self._stale(resource_id, expected_version, current.version)
            if current.deleted:
                return current
            try:
                return await self.store.delete(resource_id, expected_version=current.version)
            except VersionConflict:
                continue
        raise FhirError.of("lock-error", f"{self.kind.type}/{resource_id} kept changing; retry")

    def _stale(self, resource_id: str, expected: int, actual: int) -> FhirError:
        return FhirError.of(
            "conflict", f"{self.kind.type}/{resource_id} is at version {actual}, not {expected}"
        )
