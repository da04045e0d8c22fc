"""One owner's large jobs and large pages must not stall or exhaust the server for everyone.

The attack as it was observed, in bounded sizes: tens of jobs of almost 1 MiB, then several
concurrent searches asking for 1000 of them at once, from another process (so the client's
own work does not delay the probe). Meanwhile `/healthz` must keep answering quickly, and the
server's peak memory must stay far below what the pages would weigh whole.
"""

import subprocess
import sys
import time
from pathlib import Path

import httpx

from .conftest import bearer, make_job
from .servers import ROOT, SERVER_PROCESSES, clean_env, running_server

JOB_VALUE_BYTES = 900_000  # a job of almost 1 MiB: under the body and resource limits
JOBS_BEFORE = 40
WRITERS, JOBS_PER_WRITER = 3, 10
SEARCHERS, ROUNDS = 4, 3

# While WRITERS threads each create JOBS_PER_WRITER more jobs, SEARCHERS threads search for
# _count=1000 ROUNDS times (every other time indented: _pretty=true), reading every page.
ATTACKER = """
import sys, threading, httpx, orjson
base, token = sys.argv[1], sys.argv[2]
writers, per_writer, searchers, rounds, size = map(int, sys.argv[3:])
# orjson, so the attacker's own JSON work takes as little of the machine as it can
headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
def job(n):
    note = {"name": "note", "valueString": str(n) + "x" * size}
    return {"resourceType": "AsyncJob", "status": "accepted", "request": "https://e.org/x",
            "requestTime": "2026-01-01T00:00:00.000Z",
            "output": {"resourceType": "Parameters", "parameter": [note]}}
def write(w):
    with httpx.Client(timeout=120) as client:
        for n in range(per_writer):
            answer = client.post(f"{base}/AsyncJob", content=orjson.dumps(job(n)), headers=headers)
            assert answer.status_code == 201, answer.text[:300]
def search(s):
    with httpx.Client(timeout=120) as client:
        for r in range(rounds):
            url = f"{base}/AsyncJob?_count=1000" + ("&_pretty=true" if (r + s) % 2 else "")
            while url:
                answer = client.get(url, headers=headers)
                assert answer.status_code == 200, answer.text[:300]
                bundle = orjson.loads(answer.content)
                url = next((l["url"] for l in bundle["link"] if l["relation"] == "next"), None)
threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
threads += [threading.Thread(target=search, args=(s,)) for s in range(searchers)]
for t in threads: t.start()
for t in threads: t.join()
"""


def big_job(index: int) -> dict[str, object]:
    output = {
        "resourceType": "Parameters",
        "parameter": [{"name": "note", "valueString": f"{index}" + "x" * JOB_VALUE_BYTES}],
    }
    return make_job(id=None, output=output)


def peak_memory_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_large_jobs_and_pages_stall_no_one(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as base:
        owner = bearer("mallory", "system/AsyncJob.*")
        health = f"{base.removesuffix('/fhir/R4')}/healthz"
        with httpx.Client(timeout=60) as client:
            for index in range(JOBS_BEFORE):
                created = client.post(f"{base}/AsyncJob", json=big_job(index), headers=owner)
                assert created.status_code == 201, created.text[:300]
            assert client.get(health).status_code == 200
            server = SERVER_PROCESSES[base].pid
            before = peak_memory_kib(server)
            token = owner["Authorization"].removeprefix("Bearer ")
            sizes = (WRITERS, JOBS_PER_WRITER, SEARCHERS, ROUNDS, JOB_VALUE_BYTES)
            attacker = subprocess.Popen(
                [sys.executable, "-c", ATTACKER, base, token, *map(str, sizes)],
                cwd=ROOT,
                env=clean_env(),
            )
            latencies = []
            while attacker.poll() is None:
                start = time.perf_counter()
                assert client.get(health).status_code == 200
                latencies.append(time.perf_counter() - start)
                time.sleep(0.02)
            assert attacker.returncode == 0
            grown_mib = (peak_memory_kib(server) - before) / 1024
    latencies.sort()
    slow = [round(s * 1000) for s in latencies if s >= 0.2]
    print(
        f"probes {len(latencies)}, max {latencies[-1] * 1000:.0f} ms, p95 "
        f"{latencies[int(len(latencies) * 0.95)] * 1000:.0f} ms, slow {slow}, memory "
        f"+{grown_mib:.0f} MiB"
    )
    assert len(latencies) >= 20
    # Within 200 ms while the attack runs. The attack keeps both cores of a CI machine busy
    # (the attacker and this test run there too), so two probes may meet a busy moment;
    # before the page budget there were 4 to 9 slow probes, the slowest of 0.7 to 1.6 s.
    assert len(slow) <= 2 and latencies[-1] < 1.0, slow
    # Whole pages would weigh up to 63 MiB, four at a time: the server grew by 310 to 350
    # MiB. Now by 50 to 80, most of it the SQLite reader's page cache (64 MiB at most).
    assert grown_mib < 150


# In a fresh process: after the app's start, validating a typical job with a result builds no
# pydantic schema (building one took 10-70 ms of the first request that needed it).
FIRST_VALIDATION = """
import asyncio, sys
from pydantic._internal import _generate_schema
from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.resources.asyncjob import validate_async_job

built = []
original = _generate_schema.GenerateSchema.generate_schema
def counted(self, *args, **kwargs):
    built.append(args)
    return original(self, *args, **kwargs)

async def main():
    app = create_app(Settings(data_dir=sys.argv[1], jwt_secret="x" * 32, secret_key="k"))
    async with app.router.lifespan_context(app):
        _generate_schema.GenerateSchema.generate_schema = counted
        validate_async_job({
            "resourceType": "AsyncJob", "id": "a", "status": "completed",
            "requestTime": "2026-01-01T00:00:00.000Z", "request": "https://e.org/x",
            "transactionTime": "2026-01-01T00:00:01.000Z",
            "output": {"resourceType": "Parameters", "parameter": [
                {"name": "file", "valueUri": "https://e.org/f.ndjson"},
                {"name": "outcome", "resource": {"resourceType": "OperationOutcome",
                    "issue": [{"severity": "warning", "code": "informational"}]}}]}})
    print(len(built))

asyncio.run(main())
"""


def test_the_first_job_with_a_result_builds_no_validator(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FIRST_VALIDATION, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=clean_env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "0"
