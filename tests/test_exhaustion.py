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

JOB_VALUE_BYTES = 900_000  # under the 1 MiB body limit
JOBS = 40
SEARCHERS = 6
ROUNDS = 3

# Each thread searches for _count=1000 ROUNDS times, reading every page whole.
ATTACKER = """
import sys, threading, httpx
base, token, searchers, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
headers = {"Authorization": f"Bearer {token}"}
def search():
    with httpx.Client(timeout=120) as client:
        for _ in range(rounds):
            url = f"{base}/AsyncJob?_count=1000"
            while url:
                answer = client.get(url, headers=headers)
                assert answer.status_code == 200, answer.text[:300]
                bundle = answer.json()
                url = next((l["url"] for l in bundle["link"] if l["relation"] == "next"), None)
threads = [threading.Thread(target=search) for _ in range(searchers)]
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
        with httpx.Client(timeout=60) as client:
            for index in range(JOBS):
                created = client.post(f"{base}/AsyncJob", json=big_job(index), headers=owner)
                assert created.status_code == 201, created.text[:300]
            health = f"{base.removesuffix('/fhir/R4')}/healthz"
            assert client.get(health).status_code == 200
            server = SERVER_PROCESSES[base].pid
            before = peak_memory_kib(server)
            token = owner["Authorization"].removeprefix("Bearer ")
            attacker = subprocess.Popen(
                [sys.executable, "-c", ATTACKER, base, token, str(SEARCHERS), str(ROUNDS)],
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
    print(
        f"probes {len(latencies)}, max {latencies[-1] * 1000:.0f} ms, p90 "
        f"{latencies[int(len(latencies) * 0.9)] * 1000:.0f} ms, memory +{grown_mib:.0f} MiB"
    )
    assert latencies[-1] < 0.2
    assert grown_mib < 100
