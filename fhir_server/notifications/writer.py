"""A Subscription's writes: validated as FHIR (resources/subscription.py), its criteria
parsed as a search of a served type (search/criteria.py), at most a number per owner; a
`requested` subscription is accepted at once (`active`), as Medplum's server does."""

from collections.abc import Mapping
from typing import Any

from ..auth.ownership import OwnedJobStore
from ..auth.scopes import SmartAccess
from ..resources.kinds import ResourceKind
from ..resources.outcome import FhirError, Issue
from ..resources.subscription import SUBSCRIPTION
from ..search.criteria import parse_criteria
from ..storage.base import JobRecord, JobStore
from ..storage.writer import ResourceWriter
from .outbound import endpoint_problem


class TooManySubscriptions(FhirError):
    def __init__(self, limit: int) -> None:
        message = (
            f"An owner may have {limit} subscriptions (FHIR_SERVER_MAX_SUBSCRIPTIONS_PER_OWNER); "
            "delete one first"
        )
        super().__init__([Issue("forbidden", message)])


class SubscriptionWriter:
    """create, put and delete of Subscriptions (a Writer, api/writes.py)."""

    def __init__(
        self,
        store: JobStore,
        *,
        kinds: Mapping[str, ResourceKind],
        max_per_owner: int,
        allow_private_endpoints: bool = False,
    ) -> None:
        self.store = store
        self.kinds = kinds
        self.max_per_owner = max_per_owner
        self.allow_private_endpoints = allow_private_endpoints
        self._writer = ResourceWriter(SUBSCRIPTION, store)

    def _accepted(self, resource: dict[str, Any]) -> dict[str, Any]:
        validated = SUBSCRIPTION.validate(resource)
        kind, _ = parse_criteria(validated["criteria"], dict(self.kinds))
        # A subscription notifies only what its owner may read: one on a type the caller
        # cannot read would never fire, so it is refused (an admin, or auth off, reads all).
        store = self.store
        if isinstance(store, OwnedJobStore) and not SmartAccess(kind.type, "r").allows(
            store.scopes
        ):
            raise FhirError.of(
                "forbidden",
                f"This token may not read {kind.type}: a subscription to it would never notify",
                "Subscription.criteria",
            )
        channel = validated["channel"]
        if channel["type"] == "rest-hook":
            # What can be told now (delivery checks the resolved addresses each time).
            problem = endpoint_problem(
                channel["endpoint"], allow_private=self.allow_private_endpoints
            )
            if problem is not None:
                raise FhirError.of(
                    "value",
                    f"channel.endpoint cannot be called: {problem}",
                    "Subscription.channel.endpoint",
                )
        if validated["status"] == "requested":
            validated["status"] = "active"
        return validated

    async def _check_room(self, owner: str | None) -> None:
        if owner is None:
            return
        if (await self.store.usage(owner)).jobs >= self.max_per_owner:
            raise TooManySubscriptions(self.max_per_owner)

    async def create(self, resource: dict[str, Any], *, owner: str | None) -> JobRecord:
        accepted = self._accepted({**resource, "id": resource.get("id") or "new"})
        await self._check_room(owner)
        accepted.pop("id")
        return await self._writer.create(accepted, owner=owner)

    async def put(
        self, resource: dict[str, Any], *, expected_version: int | None, owner: str | None
    ) -> tuple[JobRecord, bool]:
        accepted = self._accepted(resource)
        current = await self.store.get(accepted["id"])
        if current is None or current.deleted:
            await self._check_room(owner)
        return await self._writer.put(accepted, expected_version=expected_version, owner=owner)

    async def delete(self, resource_id: str, /, *, expected_version: int | None) -> JobRecord:
        return await self._writer.delete(resource_id, expected_version=expected_version)
