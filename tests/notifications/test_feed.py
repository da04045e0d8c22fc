"""FeedTailer: every change once, in position order, from where the feed was at start; a hole
in the positions (a MongoDB writer that took a position and has not stored it yet) is waited
for, then passed once it is older than gap_wait."""

import asyncio

from fhir_server.notifications.feed import BATCH, FeedTailer
from fhir_server.storage.base import Change, JobStore

from ..conftest import put_job


class ListFeed:
    """A store's feed as a list the test fills."""

    def __init__(self, positions: list[int]) -> None:
        self.stored = [Change(p, "AsyncJob", f"job-{p}", 1, None) for p in positions]
        self.start = 0
        self.head_reads = 0

    async def changes(self, after: int, limit: int) -> list[Change]:
        return [c for c in self.stored if c.position > after][:limit]

    async def feed_position(self) -> int:
        self.head_reads += 1
        return self.stored[-1].position if self.stored else self.start


async def collect(tailer: FeedTailer) -> list[int]:
    seen: list[int] = []

    async def listener(change: Change) -> None:
        seen.append(change.position)

    tailer.add_listener(listener)
    return seen


async def test_a_hole_is_waited_for_then_filled_in_order():
    feed = ListFeed([1, 2, 4])
    tailer = FeedTailer({"AsyncJob": feed}, gap_wait=60)  # type: ignore[dict-item]
    tailer.positions["AsyncJob"] = 0
    seen = await collect(tailer)
    await tailer.poll()
    assert seen == [1, 2]  # 3 is missing: 4 waits
    feed.stored.insert(2, Change(3, "AsyncJob", "job-3", 1, None))
    await tailer.poll()
    assert seen == [1, 2, 3, 4]


async def test_a_hole_that_stays_is_passed_after_gap_wait():
    feed = ListFeed([1, 3])
    tailer = FeedTailer({"AsyncJob": feed}, gap_wait=0.05)  # type: ignore[dict-item]
    tailer.positions["AsyncJob"] = 0
    seen = await collect(tailer)
    await tailer.poll()
    assert seen == [1]
    await asyncio.sleep(0.06)
    await tailer.poll()
    assert seen == [1, 3]


async def test_a_running_tailer_hands_on_each_write_of_the_store_once(store: JobStore):
    await put_job(store, id="before-start")
    tailer = FeedTailer({"AsyncJob": store}, interval=0.01)
    seen: list[tuple[str, int]] = []

    async def listener(change: Change) -> None:
        seen.append((change.id, change.version))

    tailer.add_listener(listener)
    await tailer.start()
    try:
        await asyncio.wait_for(tailer.ready.wait(), 5)
        await put_job(store, id="a")
        await put_job(store, id="b")
        await store.delete("a", expected_version=1)
        for _ in range(100):
            if len(seen) == 3:
                break
            await asyncio.sleep(0.02)
    finally:
        await tailer.stop()
    assert seen == [("a", 1), ("b", 1), ("a", 2)]


async def test_the_lag_counts_the_changes_not_handed_on_yet():
    """The metric an operator alerts on; the feed's head is read only when the poll did not
    reach it (a full read, or a hole waited for)."""
    feed = ListFeed([*range(1, BATCH + 1), BATCH + 2, BATCH + 3])
    lags: list[int] = []
    tailer = FeedTailer(
        {"AsyncJob": feed},  # type: ignore[dict-item]
        gap_wait=60,
        on_lag=lambda name, lag: lags.append(lag),
    )
    tailer.positions["AsyncJob"] = 0
    await tailer.poll()  # a full read: two more are there
    await tailer.poll()  # BATCH + 1 is missing: the two after it wait
    feed.stored.insert(BATCH, Change(BATCH + 1, "AsyncJob", "job", 1, None))
    await tailer.poll()  # all handed on
    await tailer.poll()  # nothing new
    assert lags == [3, 3, 0, 0]
    assert feed.head_reads == 2
