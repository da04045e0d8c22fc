"""The active subscriptions of this process and what a change means for them: which
subscriptions it matches, whether a subscriber may still read it, and the notification
Bundle that tells them (the WebSocket channel's; the REST-hook channel posts the job
itself, as R4 says: notifications/resthook.py).

The set is loaded from the Subscription store at start and kept current from the change
feed (a Subscription's writes are changes too), so every worker knows every subscription."""

import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..auth.scopes import SmartAccess
from ..resources.instants import now_instant
from ..resources.kinds import ResourceKind
from ..resources.outcome import FhirError
from ..resources.subscription import RESOURCE_TYPE as SUBSCRIPTION
from ..resources.subscription import ended
from ..search.criteria import parse_criteria
from ..search.matcher import matches, value_of
from ..search.query import JobQuery, TokenMatch
from ..storage.base import Change, JobStore

log = logging.getLogger("fhir_server.notifications")
LOAD_LIMIT = 1_000_000  # subscriptions read at start (the per-owner limit keeps them far fewer)


@dataclass(frozen=True, slots=True)
class ActiveSubscription:
    """An active Subscription as the matcher uses it."""

    id: str
    version: int
    owner: str | None
    resource: dict[str, Any]
    kind: ResourceKind
    query: JobQuery

    @property
    def channel_type(self) -> str:
        return str(self.resource["channel"]["type"])

    @property
    def reference(self) -> str:
        return f"{SUBSCRIPTION}/{self.id}"


@dataclass(frozen=True, slots=True)
class Grant:
    """What a subscriber may read when a notification is delivered: the access token's
    owner, scopes and expiry (a WebSocket's binding carries those of the token that asked
    for it). Checked at each delivery, not only at subscribing."""

    owner: str | None
    scopes: frozenset[str]
    admin: bool = False
    expires_at: float = float("inf")

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at

    def can_read(self, change: Change, now: float | None = None) -> bool:
        """Whether the token could read the changed resource now: not expired, a read scope
        on its type, and its own resource unless an admin's."""
        if self.expired(now):
            return False
        if not self.admin and not SmartAccess(change.type, "r").allows(self.scopes):
            return False
        return self.admin or (change.owner is not None and change.owner == self.owner)


def notification_bundle(
    subscription: ActiveSubscription, change: Change, base: str, kind: str = "event-notification"
) -> dict[str, Any]:
    """The Bundle Medplum's clients expect: a `history` Bundle whose first entry is a
    SubscriptionStatus (R4B's, as Medplum backports it) naming the subscription, the second the
    changed resource, or for a deletion only its URL and last version (no body). The event
    number is the change's feed position: the same in every worker, increasing, not
    contiguous per subscription."""
    focus = f"{change.type}/{change.id}/_history/{change.version}"
    status: dict[str, Any] = {
        "resourceType": "SubscriptionStatus",
        "id": str(uuid.uuid4()),
        "status": "active",
        "type": kind,
        "subscription": {"reference": subscription.reference},
        "topic": subscription.resource["criteria"],
        "notificationEvent": [
            {
                "eventNumber": str(change.position),
                "timestamp": now_instant(),
                "focus": {"reference": focus},
            }
        ],
    }
    entry: dict[str, Any] = {"fullUrl": f"{base}/{change.type}/{change.id}"}
    if change.deleted:
        entry["request"] = {"method": "DELETE", "url": f"{change.type}/{change.id}"}
        entry["response"] = {"status": "410 Gone", "etag": f'W/"{change.version}"'}
    else:
        entry["resource"] = change.resource
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "history",
        "timestamp": now_instant(),
        "entry": [{"resource": status}, entry],
    }


def status_bundle(subscription_id: str, kind: str) -> dict[str, Any]:
    """A SubscriptionStatus alone: `handshake` after a bind, `heartbeat` now and then."""
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "history",
        "timestamp": now_instant(),
        "entry": [
            {
                "resource": {
                    "resourceType": "SubscriptionStatus",
                    "id": str(uuid.uuid4()),
                    "status": "active",
                    "type": kind,
                    "subscription": {"reference": f"{SUBSCRIPTION}/{subscription_id}"},
                }
            }
        ],
    }


class Channel(Protocol):
    """A way of delivering (websocket, rest-hook): told of each matching change."""

    async def deliver(self, subscription: ActiveSubscription, change: Change) -> None: ...


SubscriptionListener = Callable[[str, ActiveSubscription | None], Awaitable[None]]


class Subscriptions:
    """The active subscriptions, by id, and the channels that deliver their notifications."""

    def __init__(self, kinds: Mapping[str, ResourceKind], store: JobStore | None = None) -> None:
        self.kinds = dict(kinds)
        self.store = store  # the Subscriptions' own
        self.active: dict[str, ActiveSubscription] = {}
        # An index of the subscriptions by one token a match requires (column, value), so a
        # change is matched only against the subscriptions it could match; those with no
        # such token are tried on every change.
        self._by_token: dict[tuple[str, str, str], set[str]] = {}
        self._everywhere: dict[str, set[str]] = {}
        # How many subscriptions are indexed by each (type, column): the columns to look up.
        self._columns: Counter[tuple[str, str]] = Counter()
        self.channels: dict[str, Channel] = {}
        # Told when a subscription changes or ends (id, the new one or None).
        self.listeners: list[SubscriptionListener] = []

    async def load(self) -> None:
        """Every active subscription in the store."""
        store = self.store
        if store is None:
            return
        query = JobQuery(
            where=((TokenMatch("status", frozenset({"active"})),),),
            limit=LOAD_LIMIT,
            max_bytes=None,
        )
        for record in await store.search(query):
            if record.resource is not None:
                self._set(record.id, record.version, record.owner, record.resource)

    async def current(self, subscription_id: str) -> ActiveSubscription | None:
        """The active subscription, read from the store if the feed has not brought it yet
        (a client binds right after creating it, before the next poll)."""
        active = self.active.get(subscription_id)
        if active is None and self.store is not None:
            record = await self.store.get(subscription_id)
            if record is not None and record.resource is not None:
                active = self._set(record.id, record.version, record.owner, record.resource)
        return active

    def _set(
        self, subscription_id: str, version: int, owner: str | None, resource: dict[str, Any]
    ) -> ActiveSubscription | None:
        self._forget(subscription_id)
        if resource.get("status") != "active":
            return None
        try:
            kind, query = parse_criteria(str(resource.get("criteria", "")), self.kinds)
        except FhirError as error:  # stored by an older server, or its parameters changed
            log.warning("Subscription/%s: criteria no longer parse: %s", subscription_id, error)
            return None
        active = ActiveSubscription(subscription_id, version, owner, resource, kind, query)
        self.active[subscription_id] = active
        keys = _index_keys(active)
        for key in keys:
            self._by_token.setdefault(key, set()).add(subscription_id)
        if keys:
            self._columns[keys[0][:2]] += 1
        else:
            self._everywhere.setdefault(kind.type, set()).add(subscription_id)
        return active

    def _forget(self, subscription_id: str) -> None:
        known = self.active.pop(subscription_id, None)
        if known is None:
            return
        keys = _index_keys(known)
        for key in keys:
            self._by_token.get(key, set()).discard(subscription_id)
        if keys:
            self._columns[keys[0][:2]] -= 1
        self._everywhere.get(known.kind.type, set()).discard(subscription_id)

    async def on_change(self, change: Change) -> None:
        """The feed listener: keep the set current, then hand matching changes to channels."""
        if change.type == SUBSCRIPTION:
            known = self.active.get(change.id)
            if known is not None and known.version > change.version:
                return  # read from the store already (current)
            resource = None if change.deleted else change.resource
            active = self._set(change.id, change.version, change.owner, resource or {})
            for listener in self.listeners:
                await listener(change.id, active)
            return
        for subscription in self.matching(change):
            channel = self.channels.get(subscription.channel_type)
            if channel is not None:
                await channel.deliver(subscription, change)

    def matching(self, change: Change) -> list[ActiveSubscription]:
        """The active subscriptions whose criteria match the change (a purge matches none:
        retention removes what was final or deleted, which was notified when it became so).
        Whether the subscriber may read it is the channel's check, at delivery, with the
        subscriber's Grant."""
        if change.purged or change.type not in self.kinds:
            return []
        kind = self.kinds[change.type]
        values: dict[str, str | int] = {}
        candidates = set(self._everywhere.get(change.type, ()))
        columns = [c for (type_name, c), n in self._columns.items() if n and type_name == kind.type]
        for column in columns:
            value = value_of(change, kind, column, values)
            if value is not None:
                candidates |= self._by_token.get((kind.type, column, str(value)), set())
        found = [self.active[i] for i in candidates if i in self.active]
        now = int(time.time() * 1000)
        return [
            s
            for s in found
            if not ended(s.resource, now) and matches(s.query, change, s.kind, values)
        ]


# The token column a subscription is indexed by, most selective first: an id names one job,
# any other token (type) some, a status a quarter of them.
def _preference(column: str) -> int:
    return 0 if column == "id" else 2 if column == "status" else 1


def _index_keys(subscription: ActiveSubscription) -> list[tuple[str, str, str]]:
    """(type, column, value) for each value of the one required token match it is indexed
    by: a condition of the query that is a single, non-negated token match (a match needs
    one of its values); none when the query has no such condition."""
    required = [
        any_of[0]
        for any_of in subscription.query.where
        if len(any_of) == 1 and isinstance(any_of[0], TokenMatch) and not any_of[0].negate
    ]
    if not required:
        return []
    best = min(required, key=lambda match: _preference(match.column))
    return [(subscription.kind.type, best.column, value) for value in sorted(best.values)]
