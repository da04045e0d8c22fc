"""The server under test: the product's app on the configured store (FHIR_SERVER_* as for
`fhir-server serve`), first topped up to N jobs through the store API, then one uvicorn worker.

    python -m benchmarks.serve_seeded --jobs 1000 --port 8100
"""

import argparse
import asyncio
import sys
import time

import uvicorn

from fhir_server.app import create_app
from fhir_server.cli import server_options
from fhir_server.config import Settings
from fhir_server.resources.asyncjob import validate_async_job
from fhir_server.search.query import JobQuery
from fhir_server.storage.base import JobStore
from fhir_server.storage.factory import build_store

from .jobs import bench_job

BATCH = 500


async def seed(store: JobStore, count: int) -> int:
    """Store jobs 0..count-1 that are missing (a persistent store keeps earlier runs')."""
    await store.open()
    present = await store.count(JobQuery(limit=0))
    started = time.monotonic()
    for first in range(present, count, BATCH):
        batch = [validate_async_job(bench_job(i)) for i in range(first, min(first + BATCH, count))]
        await asyncio.gather(*(store.save(job, expected_version=0) for job in batch))
    took = time.monotonic() - started
    print(
        f"BENCH store={type(store).__name__} seeded={count - present} in {took:.1f}s",
        file=sys.stderr,
    )
    return count - present


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = Settings(host="127.0.0.1", port=args.port)
    store = build_store(settings)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(seed(store, args.jobs))
    loop.close()
    # The app opens the store again in its lifespan: open() is idempotent in every backend.
    app = create_app(settings, store=store)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        **server_options(settings),  # the connections as `fhir-server serve` bounds them
    )


if __name__ == "__main__":
    main()
