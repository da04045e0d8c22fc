"""FeedTailer: each worker process reads the stores' change feeds (storage/base.py Change)
and hands every change to its listeners, whichever process wrote it (another worker,
`fhir-server load`, a producer's JobService in another process): the store is the one
place all writes meet, so nothing needs a broker."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from ..storage.base import Change, JobStore, StoreUnavailable

log = logging.getLogger("fhir_server.notifications")
Listener = Callable[[Change], Awaitable[None]]
# Changes read at a time.
BATCH = 500


class FeedTailer:
    """Polls each store's `changes(after=position)` every `interval` seconds, from the
    position the feed had when it started, and awaits each listener on each change, in
    position order. While `idle()` says no one is listening for changes (no active
    subscription), it reads every `idle_interval` seconds instead: a read on the event loop
    twenty times a second is not free when other threads hold the interpreter.

    A hole in the positions (MongoDB: a writer took position 5, another 6, and 6 was stored
    first) is waited for up to `gap_wait` seconds before the changes after it are passed on;
    a position still missing then belonged to a write that failed."""

    def __init__(
        self,
        stores: Mapping[str, JobStore],
        *,
        interval: float = 0.05,
        gap_wait: float = 2.0,
        on_lag: Callable[[str, int], None] | None = None,
        prepare: Callable[[], Awaitable[None]] | None = None,
        idle: Callable[[], bool] | None = None,
        idle_interval: float = 1.0,
    ) -> None:
        self.stores = dict(stores)
        self.interval = interval
        self.gap_wait = gap_wait
        self.positions: dict[str, int] = {}
        self.listeners: list[Listener] = []
        self._on_lag = on_lag
        self._prepare = prepare
        self._idle = idle
        self.idle_interval = max(interval, idle_interval)
        self.ready = asyncio.Event()
        self._gap_since: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)

    async def start(self) -> None:
        """Start tailing. The feeds' positions are read, then `prepare` runs (loading what
        the listeners need, so no change after those positions is missed), in the task: a
        store that is down at start-up is waited for, as the server's start waits for it."""
        self._task = asyncio.create_task(self._run(), name="feed-tailer")

    async def _begin(self) -> None:
        while True:
            try:
                for name, store in self.stores.items():
                    self.positions[name] = await store.feed_position()
                if self._prepare is not None:
                    await self._prepare()
            except StoreUnavailable as exc:
                log.warning("change feed unavailable at start, retrying: %s", exc)
                await asyncio.sleep(max(self.interval, 0.5))
                continue
            self.ready.set()
            return

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        await self._begin()
        while True:
            try:
                busy = await self.poll()
            except StoreUnavailable as exc:
                log.warning("change feed unavailable, retrying: %s", exc)
                busy = False
            except Exception:  # a listener's bug must not stop every notification
                log.exception("change feed tailing failed")
                busy = False
            if not busy:
                idle = self._idle is not None and self._idle()
                await asyncio.sleep(self.idle_interval if idle else self.interval)

    async def poll(self) -> bool:
        """One read of every feed; True when a feed had a full batch (read again at once)."""
        full = False
        for name, store in self.stores.items():
            changes = await store.changes(self.positions[name], BATCH)
            full = full or len(changes) == BATCH
            passed = self._contiguous(name, changes)
            for change in passed:
                self.positions[name] = change.position
                for listener in self.listeners:
                    try:
                        await listener(change)
                    except Exception:
                        log.exception("a change listener failed on %r", change)
            if self._on_lag is not None:
                # Every change the read found was handed on, and it found all there were: no
                # lag, without a read of the feed's head (20 a second while tailing).
                caught_up = len(changes) < BATCH and len(passed) == len(changes)
                head = self.positions[name] if caught_up else await store.feed_position()
                self._on_lag(name, max(0, head - self.positions[name]))
        return full

    def _contiguous(self, name: str, changes: list[Change]) -> list[Change]:
        """The changes up to the first hole, or all once the hole was waited for."""
        expected = self.positions[name] + 1
        for n, change in enumerate(changes):
            if change.position != expected:
                first_seen = self._gap_since.setdefault(name, time.monotonic())
                if time.monotonic() - first_seen < self.gap_wait:
                    return changes[:n]
                # Waited long enough: the missing position's write never committed.
                self._gap_since.pop(name, None)
                return changes
            expected += 1
        self._gap_since.pop(name, None)
        return changes
