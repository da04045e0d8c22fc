"""A transaction of 1,000 creates against 1,000 single POSTs over one connection, same run.

    python -m benchmarks.bundles [--entries 1000] [--rounds 3]

Starts `fhir-server serve` (one worker, embedded SQLite store with synchronous=FULL, auth off,
access log on) pinned to CPU 0 in a fresh data dir; this client runs on CPU 1. Each round
sends, in this order over one keep-alive connection: N single `POST /fhir/R4/AsyncJob`, one
`transaction` Bundle of N creates, one `batch` Bundle of N creates. Prints a Markdown table
of the median wall time of each (the whole exchange as the client sees it) and every round.
"""

import argparse
import statistics
import time
from typing import Any

import httpx

from .serving import pinned_server

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def job(i: int) -> dict[str, Any]:
    return {
        "resourceType": "AsyncJob",
        "status": "accepted",
        "type": "bulk-export",
        "requestTime": "2026-01-01T00:00:00.000Z",
        "request": f"https://example.org/fhir/R4/Patient/$export?_since=2026-01-01&n={i}",
    }


def bundle(kind: str, n: int) -> dict[str, Any]:
    entries = [
        {"resource": job(i), "request": {"method": "POST", "url": "AsyncJob"}} for i in range(n)
    ]
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"singles": [], "transaction": [], "batch": []}
    with pinned_server("bundles") as root, httpx.Client(timeout=60) as http:
        base = f"{root}/fhir/R4"
        transaction, batch = bundle("transaction", args.entries), bundle("batch", args.entries)
        for _ in range(args.rounds):
            started = time.perf_counter()
            for i in range(args.entries):
                answer = http.post(f"{base}/AsyncJob", json=job(i), headers=FHIR_JSON)
                assert answer.status_code == 201, answer.text
            times["singles"].append(time.perf_counter() - started)
            for name, body in (("transaction", transaction), ("batch", batch)):
                started = time.perf_counter()
                answer = http.post(base, json=body, headers=FHIR_JSON)
                times[name].append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text[:500]
                statuses = {e["response"]["status"] for e in answer.json()["entry"]}
                assert statuses == {"201 Created"}, statuses
    n = f"{args.entries:,}"
    print(f"| {n} creates | median s | per create ms | rounds (s) |")
    print("|---|---:|---:|---|")
    labels = {
        "singles": f"{n} single POSTs, one connection",
        "transaction": f"one transaction Bundle of {n}",
        "batch": f"one batch Bundle of {n}",
    }
    for name, label in labels.items():
        median = statistics.median(times[name])
        rounds = ", ".join(f"{t:.3f}" for t in times[name])
        print(f"| {label} | {median:.3f} | {median * 1000 / args.entries:.3f} | {rounds} |")


if __name__ == "__main__":
    main()
