"""Read and search AsyncJobs with fhirpy, as a client application would.

Run `make run` in one terminal, then: FHIR_TOKEN=<token> .venv/bin/python examples/fhirpy_client.py
"""

import asyncio
import os

from fhirpy import AsyncFHIRClient

BASE_URL = os.environ.get("FHIR_BASE_URL", "http://127.0.0.1:8000/fhir/R4")
TOKEN = os.environ.get("FHIR_TOKEN")  # a bearer token, when the server requires one


async def main() -> None:
    client = AsyncFHIRClient(BASE_URL, authorization=f"Bearer {TOKEN}" if TOKEN else None)
    jobs = client.resources("AsyncJob")

    print("jobs stored:", await jobs.count())
    for job in await jobs.search(status="completed").sort("-_lastUpdated").fetch():
        print(f"completed  {job['id']}  {job.get('type', '-'):16} {job['request']}")

    migration = await jobs.search(type="data-migration").first()
    if migration is not None:
        print("data migration to version", migration["dataVersion"])

    every_job = await jobs.limit(2).fetch_all()  # follows the `next` links, two per page
    print("all ids:", ", ".join(sorted(job["id"] for job in every_job)))

    job = await client.reference("AsyncJob", every_job[0]["id"]).to_resource()
    print("read", job["id"], "version", job["meta"]["versionId"], "status", job["status"])


if __name__ == "__main__":
    asyncio.run(main())
