"""Delivering REST-hook Subscriptions: at least once, in feed order, across restarts.

Every worker process runs one `RestHookDelivery`. It keeps the list of active rest-hook
Subscriptions (read again whenever the Subscriptions' own feed moves) and, for each one that
is behind the jobs' change feed, a task that:

1. takes the subscription's lease in the DeliveryStore (storage/deliveries.py): one process at
   a time delivers a subscription; the others skip it until the lease runs out (a holder that
   died) or is released (a graceful shutdown);
2. reads the changes after the subscription's acknowledged position, and for each one the
   subscription concerns (its owner's job, at delivery time: the subscription is read again
   before every POST; its criteria) POSTs the notification (resthook.py) through the checked
   Sender (outbound.py);
3. on a 2xx stores the change's position and the event count; anything else is a failure:
   the same notification, with the same event number, is tried again after a backoff
   (`retry_delay`), and after `max_attempts` consecutive failures the Subscription is written
   with `status: error` and `error` saying why (a new version, its owner kept); its position
   stays, so setting it active again resumes where it stopped.

A position is stored only after the endpoint acknowledged the change, so a stop at any point
(a crash included) repeats at most the notification in flight: duplicates are possible, and
carry the same X-Event-Number; nothing acknowledged is lost.
"""

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from typing import Any

import httpx

from ..observability.metrics import Metrics
from ..resources.instants import parse_instant_ms
from ..resources.kinds import ResourceKind
from ..resources.outcome import FhirError
from ..resources.subscription import ended
from ..search.criteria import parse_criteria
from ..search.matcher import matches
from ..search.query import JobQuery, SortKey
from ..storage.base import Change, JobRecord, JobStore, StoreUnavailable, VersionConflict
from ..storage.deliveries import DeliveryState, DeliveryStore
from .outbound import EndpointRefused, Sender
from .resthook import Notification, max_attempts_of, notification, retry_delay

log = logging.getLogger("fhir_server.notifications")

POLL_SECONDS = 1.0  # how often the feeds are looked at without a wake-up
BATCH = 100  # changes read at a time
# How far the clocks of the processes (hosts) that write may differ, at most.
CLOCK_SKEW_MS = 2_000
CHANNEL = "rest-hook"  # the channel label of the notification metrics
SUBSCRIPTIONS_PAGE = 500
# (subscription resource, change) -> whether its criteria select the change
Criteria = Callable[[dict[str, Any], Change], bool]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    backoff_base: float
    backoff_cap: float


def criteria_of(kinds: dict[str, ResourceKind]) -> Criteria:
    """Whether a subscription's criteria select a change: the change is of the subscribed type
    and matches its search (search/criteria.py, search/matcher.py). Criteria that do not parse
    (validation refuses them) select nothing."""

    @lru_cache(maxsize=1024)
    def parsed(criteria: str) -> tuple[ResourceKind, JobQuery] | None:
        try:
            return parse_criteria(criteria, kinds)
        except FhirError:
            return None

    def select(subscription: dict[str, Any], change: Change) -> bool:
        found = parsed(str(subscription.get("criteria", "")))
        if found is None or found[0].type != change.type:
            return False
        return matches(found[1], change, found[0])

    return select


def is_active_rest_hook(resource: dict[str, Any] | None) -> bool:
    return (
        resource is not None
        and resource.get("status") == "active"
        and resource.get("channel", {}).get("type") == "rest-hook"
    )


def concerns(subscription: JobRecord, change: Change, criteria: Criteria) -> bool:
    """Whether the subscription notifies about the change: a job its owner can read (a
    subscription without an owner, made with authentication off, reads every job), that its
    criteria select. A purged job is not notified: retention is housekeeping, not a change a
    client made."""
    if change.purged:
        return False
    if subscription.owner is not None and change.owner != subscription.owner:
        return False
    resource = subscription.resource
    if resource is None or ended(resource, int(time.time() * 1000)):
        return False
    return criteria(resource, change)


class RestHookDelivery:
    def __init__(
        self,
        *,
        jobs: JobStore,
        subscriptions: JobStore,
        states: DeliveryStore,
        sender: Sender,
        policy: RetryPolicy,
        criteria: Criteria,
        metrics: Metrics | None = None,
        poll: float = POLL_SECONDS,
    ) -> None:
        self.jobs = jobs
        self.subscriptions = subscriptions
        self.states = states
        self.sender = sender
        self.policy = policy
        self.criteria = criteria
        self.metrics = metrics
        self.poll = poll
        # Longer than any attempt, so that a lease outlives the POST its holder is making.
        self.lease = max(30.0, 3 * sender.timeout)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # subscription id -> (position known delivered, when it was known): a subscription is
        # looked at again when the feed moves past it, or once its lease may have run out.
        self._known: dict[str, tuple[int, float]] = {}
        self._active: list[JobRecord] = []
        self._subscriptions_seen = -1
        self._starts: dict[str, int] = {}  # where a subscription without a record starts

    def wake(self) -> None:
        """Look at the feeds now (a change was written)."""
        self._wake.set()

    async def deliver(self, subscription: Any, change: Change) -> None:
        """As the rest-hook Channel of notifications/subscriptions.py, told of a matching
        change by this process's feed tailer: deliveries go from the stored positions, so it
        only wakes the loop."""
        self.wake()

    async def on_subscription(self, subscription_id: str, active: Any) -> None:
        """A Subscription was written (a listener of Subscriptions): look at it now."""
        self.wake()

    async def run(self) -> None:
        while not self._stopping:
            try:
                await self._tick()
            except StoreUnavailable as exc:
                log.warning("REST-hook delivery: the store is unavailable (%s)", exc)
            except Exception:
                log.exception("REST-hook delivery failed; going on")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll):
                    await self._wake.wait()
            self._wake.clear()

    async def stop(self) -> None:
        """Stop delivering: a POST in flight is abandoned (it was not acknowledged, so it is
        delivered again later), and the leases are released for the next process."""
        self._stopping = True
        self._wake.set()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for subscription in list(self._known):
            with contextlib.suppress(Exception):
                await self.states.release(subscription, self.holder)

    async def close(self) -> None:
        await self.sender.close()
        await self.states.close()

    async def _tick(self) -> None:
        head = await self.jobs.feed_position()
        await self._refresh_subscriptions()
        now = time.time()
        behind = []
        for subscription in self._active:
            known, when = self._known.get(subscription.id, (-1, 0.0))
            if subscription.id in self._tasks:
                behind.append(known)
            elif known < head or now - when > self.lease:
                behind.append(known)
                start = self._starts.get(subscription.id, head)
                task = asyncio.create_task(self._deliver(subscription.id, start))
                self._tasks[subscription.id] = task
                task.add_done_callback(partial(self._done, subscription.id))
        if self.metrics is not None:
            positions = [p for p in behind if p >= 0]
            self.metrics.rest_hook_lag.set(head - min(positions) if positions else 0)

    def _done(self, subscription_id: str, task: "asyncio.Task[None]") -> None:
        self._tasks.pop(subscription_id, None)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("REST-hook delivery of Subscription/%s failed: %r", subscription_id, error)

    async def _refresh_subscriptions(self) -> None:
        """The active rest-hook subscriptions, listed again when their feed has moved; one
        newly listed starts, if it has no delivery state yet, where _start_of says."""
        seen = await self.subscriptions.feed_position()
        if seen != self._subscriptions_seen:
            active: list[JobRecord] = []
            offset = 0
            while True:
                query = JobQuery(sort=(SortKey("id"),), limit=SUBSCRIPTIONS_PAGE, offset=offset)
                page = await self.subscriptions.search(query)
                active += [r for r in page if is_active_rest_hook(r.resource)]
                if len(page) < SUBSCRIPTIONS_PAGE:
                    break
                offset += SUBSCRIPTIONS_PAGE
            before = {r.id for r in self._active}
            ids = {r.id for r in active}
            for listed in active:
                if listed.id not in before:
                    self._starts[listed.id] = await self._start_of(listed)
            for gone in before - ids:
                self._known.pop(gone, None)
                self._starts.pop(gone, None)
                record = await self.subscriptions.get(gone)
                if record is None or record.deleted:
                    await self.states.remove(gone)  # made again under its id, it starts anew
            self._active = active
            self._subscriptions_seen = seen

    async def _start_of(self, subscription: JobRecord) -> int:
        """Where a subscription's delivery starts if it has none yet: the jobs' feed just
        before its version was written (less the clock difference workers may have), so
        nothing written after it is missed, however late this process comes to list it (a
        worker still starting when it was made); a few changes written just before it may be
        delivered too (at least once)."""
        written = parse_instant_ms(subscription.last_updated)
        return await self.jobs.position_before(written - CLOCK_SKEW_MS)

    async def _deliver(self, subscription_id: str, start: int) -> None:
        """Bring one subscription up to the feed, as long as this process holds its lease."""
        state = await self.states.claim(
            subscription_id, self.holder, now=time.time(), lease=self.lease, start=start
        )
        if state is None:  # another process delivers it
            head = await self.jobs.feed_position()
            self._known[subscription_id] = (head, time.time())
            return
        self._starts.pop(subscription_id, None)
        while not self._stopping:
            if (wait := state.next_attempt - time.time()) > 0:
                await asyncio.sleep(min(wait, self.lease / 3))
                if not await self._record(state):
                    return
                continue
            changes = await self.jobs.changes(state.position, BATCH)
            if not changes:
                break
            subscription = await self.subscriptions.get(subscription_id)
            for change in changes:
                if subscription is None or not is_active_rest_hook(subscription.resource):
                    await self._record(state)
                    return
                if not concerns(subscription, change, self.criteria):
                    state = replace(state, position=change.position)
                    continue
                # Read again just before the POST: its owner, criteria and endpoint now.
                subscription = await self.subscriptions.get(subscription_id)
                if subscription is None or not is_active_rest_hook(subscription.resource):
                    continue  # stops at the check above
                if not concerns(subscription, change, self.criteria):
                    state = replace(state, position=change.position)
                    continue
                state = await self._attempt(subscription, change, state)
                if state.failures or state.next_attempt == -1:
                    break
                if not await self._record(state):  # acknowledged: kept at once
                    return
            if not await self._record(state) or state.next_attempt == -1:
                return
        self._known[subscription_id] = (state.position, time.time())

    async def _attempt(
        self, subscription: JobRecord, change: Change, state: DeliveryState
    ) -> DeliveryState:
        """POST the change's notification; the state after it (next_attempt -1: the
        subscription was set to error, stop)."""
        resource = subscription.resource or {}
        note = notification(resource, change, state.events + 1)
        if state.failures and self.metrics is not None:
            self.metrics.delivery_retries.labels(CHANNEL).inc()
        reason = await self._post(resource["channel"].get("endpoint", ""), note)
        if reason is None:
            return replace(
                state, position=change.position, events=state.events + 1, failures=0, next_attempt=0
            )
        failures = state.failures + 1
        log.info(
            "REST-hook Subscription/%s attempt %d failed: %s", subscription.id, failures, reason
        )
        if failures >= max_attempts_of(resource, self.policy.max_attempts):
            await self._set_error(
                subscription.id, f"{failures} attempts failed; the last: {reason}"
            )
            return replace(state, failures=0, next_attempt=-1)
        delay = retry_delay(failures, base=self.policy.backoff_base, cap=self.policy.backoff_cap)
        return replace(state, failures=failures, next_attempt=time.time() + delay)

    async def _post(self, endpoint: str, note: Notification) -> str | None:
        """Why the POST failed (None: the endpoint acknowledged it); counted by outcome."""
        try:
            answer = await self.sender.post(endpoint, note.headers, note.body)
        except EndpointRefused as exc:
            log.info("REST-hook endpoint refused: %s", exc)
            return self._failed("refused", f"endpoint refused: {exc.public}")
        except TimeoutError:
            return self._failed("timeout", f"no answer within {self.sender.timeout:g} s")
        except httpx.HTTPError as exc:
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return self._failed("network", why)
        if 200 <= answer.status < 300:
            if self.metrics is not None:
                self.metrics.deliveries.labels(CHANNEL).inc()
            return None
        return self._failed("status", f"the endpoint answered {answer.status}")

    def _failed(self, reason: str, why: str) -> str:
        if self.metrics is not None:
            self.metrics.delivery_failures.labels(CHANNEL, reason).inc()
        return why

    async def _record(self, state: DeliveryState) -> bool:
        stored = replace(state, next_attempt=max(state.next_attempt, 0.0))
        if await self.states.record(stored, now=time.time(), lease=self.lease):
            self._known[state.subscription] = (state.position, time.time())
            return True
        return False  # the lease went to another process: it delivers from here

    async def _set_error(self, subscription_id: str, reason: str) -> None:
        """The subscription's next version, with status error and why (unless it changed
        meanwhile: then its owner has decided)."""
        for _ in range(3):
            current = await self.subscriptions.get(subscription_id)
            if current is None or not is_active_rest_hook(current.resource):
                return
            resource = {**(current.resource or {}), "status": "error", "error": reason}
            try:
                await self.subscriptions.save(
                    resource, expected_version=current.version, owner=current.owner, method="PUT"
                )
            except VersionConflict:
                continue
            if self.metrics is not None:
                self.metrics.rest_hook_errors.inc()
            log.warning("REST-hook Subscription/%s set to error: %s", subscription_id, reason)
            return
