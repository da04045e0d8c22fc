"""Retention: remove final jobs nobody touched for a while (`accepted` jobs are never purged)."""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from ..resources.asyncjob import FINAL_STATUSES
from ..storage.base import JobStore

log = logging.getLogger("fhir_server.retention")


def utc_now() -> datetime:
    return datetime.now(UTC)


async def purge_older_than(store: JobStore, age: timedelta) -> int:
    """Remove final (and deleted) jobs last updated more than `age` ago; how many."""
    before = (utc_now() - age).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return await store.purge(before=before, statuses=FINAL_STATUSES)


async def sweep(store: JobStore, age: timedelta, interval: timedelta) -> None:
    """Purge every `interval`, until cancelled; a failed round is logged and retried."""
    while True:
        try:
            removed = await purge_older_than(store, age)
            if removed:
                log.info("retention: purged %d jobs older than %s", removed, age)
        except Exception:
            log.exception("retention sweep failed; next attempt in %s", interval)
        await asyncio.sleep(interval.total_seconds())
