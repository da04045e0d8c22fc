"""Opening the store at start-up without requiring the database to be up already."""

import asyncio
import logging
import signal

from .base import JobStore, SchemaTooNew, StoreMigrationFailed, StoreUnavailable

log = logging.getLogger("fhir_server")
RETRY_SECONDS = 1.0


async def open_store(store: JobStore) -> asyncio.Task[None] | None:
    """Open now; if the database is unreachable, keep serving (requests and /readyz answer
    503) and retry in the background. Returns that task, to cancel at shutdown.

    Only StoreUnavailable is retried: a database this server cannot use (SchemaTooNew,
    StoreMigrationFailed) stays so, and raises here, which fails the server's start."""
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
        except (SchemaTooNew, StoreMigrationFailed) as exc:
            # Reachable at last, but unusable: answering 503 until someone notices would
            # hide it, so the server stops.
            log.error("%s", exc)
            _stop_serving()
            return
        log.info("storage reachable again: opened")
        return


def _stop_serving() -> None:
    """Shut the server process down as an operator's SIGTERM does (gracefully)."""
    signal.raise_signal(signal.SIGTERM)
