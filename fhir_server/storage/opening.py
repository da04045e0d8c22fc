"""Opening the store at start-up without requiring the database to be up already."""

import asyncio
import logging

from .base import JobStore, StoreUnavailable

log = logging.getLogger("fhir_server")
RETRY_SECONDS = 1.0


async def open_store(store: JobStore) -> asyncio.Task[None] | None:
    """Open now; if the database is unreachable, keep serving (requests and /readyz answer
    503) and retry in the background. Returns that task, to cancel at shutdown."""
    try:
        await store.open()
    except StoreUnavailable as exc:
        log.warning("storage unavailable at start-up, retrying in the background: %s", exc)
        return asyncio.create_task(_retry_open(store))
    return None


async def _retry_open(store: JobStore) -> None:
    while True:
        await asyncio.sleep(RETRY_SECONDS)
        try:
            await store.open()
        except StoreUnavailable:
            continue
        log.info("storage reachable again: opened")
        return
