"""Screenshots of the job console for the docs: `python -m tests.console_screenshots`
writes docs/console-overview.png and docs/console-job.png (Debian's chromium, headless,
against a real server filled with an hour of made-up jobs)."""

import random
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from .browser import chromium
from .conftest import token
from .servers import running_server

DOCS = Path(__file__).parent.parent / "docs"
ADMIN = token()
TYPES = {"bulk-export": 40, "composition-sign": 6, "reindex": 90, "transaction": 3}
SIGNER = "Signer is not the author of the composition"
DISK = "The export store is full (ENOSPC)"


def instant(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def outcome(text: str) -> dict[str, Any]:
    issue = {"severity": "error", "code": "exception", "details": {"text": text}}
    resource = {"resourceType": "OperationOutcome", "issue": [issue]}
    return {"resourceType": "Parameters", "parameter": [{"name": "outcome", "resource": resource}]}


def fill(http: httpx.Client) -> str:
    """An hour of jobs: most completed, some failed, a few running; the id of one to show."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    shown = ""
    for n in range(160):
        kind = rng.choice(list(TYPES))
        # the first few still run: requested in the last minutes, far from done
        requested = now - timedelta(minutes=rng.uniform(0, 2 if n < 5 else 59))
        job: dict[str, Any] = {
            "resourceType": "AsyncJob",
            "id": str(uuid.uuid4()),
            "status": "accepted",
            "requestTime": instant(requested),
            "request": f"https://fhir.example.org/fhir/R4/${kind}",
            "type": kind,
        }
        assert http.put(f"AsyncJob/{job['id']}", json=job).status_code == 201
        finished = requested + timedelta(seconds=rng.expovariate(1 / TYPES[kind]))
        if n < 5:
            finished = now + timedelta(minutes=10)
        if finished > now:
            job["output"] = {
                "resourceType": "Parameters",
                "parameter": [{"name": "progress", "valueString": f"{rng.randint(5, 95)}%"}],
            }
        elif rng.random() < 0.08:
            job.update(
                status="error",
                transactionTime=instant(finished),
                output=outcome(SIGNER if kind == "composition-sign" else DISK),
            )
        else:
            job.update(status="completed", transactionTime=instant(finished))
            if kind == "bulk-export":
                url = f"https://files.example.org/export/{job['id'][:8]}/Patient.ndjson"
                job["output"] = {
                    "resourceType": "Parameters",
                    "parameter": [
                        {"name": "transactionTime", "valueInstant": job["requestTime"]},
                        {
                            "name": "output",
                            "part": [
                                {"name": "type", "valueCode": "Patient"},
                                {"name": "url", "valueUri": url},
                                {"name": "count", "valueInteger": 1200 + n},
                            ],
                        },
                    ],
                }
                shown = job["id"]
        if job["status"] != "accepted" or "output" in job:
            assert http.put(f"AsyncJob/{job['id']}", json=job).status_code == 200, job
    return shown


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch, running_server(Path(scratch) / "data") as base:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=base + "/", headers=headers, timeout=10) as http:
            job_id = fill(http)
        root = base.removesuffix("/fhir/R4")
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{root}/console#token={ADMIN}")
            page.locator("#durations table").wait_for()
            page.locator("#failures li").first.wait_for()
            page.screenshot(path=DOCS / "console-overview.png", full_page=True)
            page.evaluate("id => { window.location.hash = '#/job/' + id }", job_id)
            page.locator("#job-history li").first.wait_for()
            page.locator(".poll pre").nth(1).wait_for()
            page.screenshot(path=DOCS / "console-job.png", full_page=True)
    print("wrote docs/console-overview.png and docs/console-job.png")


if __name__ == "__main__":
    main()
