"""`fhir-server load` of one NDJSON file into an empty embedded store, beside its limit.

    python -m benchmarks.load [--jobs 100000] [--rss-jobs 1000000] [--rounds 3] [--batch-size N]

Writes an NDJSON file of N plain AsyncJobs (random UUIDs, four statuses, seeded), then per
round runs `fhir-server load FILE --data-dir EMPTY` as a subprocess (full validation, the
SQLite store's `synchronous=FULL`, the default batch size) and, in the same round, the limit:
Python's `sqlite3` inserting the same stored documents (stamped canonical JSON and index
values made before the clock starts) into a new file of the current schema (its indexes and
tally triggers in place, live and version rows) in one transaction. Prints a Markdown table:
the load's wall time (the whole process: start-up, validation, storing, index builds), its
jobs/s, the limit's jobs/s and the ratio, and each command's peak RSS (`/usr/bin/time -f %M`).
With --rss-jobs, one more load of that many jobs, for its peak RSS (memory stays flat: the
file is streamed, never held).
"""

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from fhir_server.resources.instants import now_instant
from fhir_server.storage.base import index_values, stamp, stored_json
from fhir_server.storage.sqlite import FILE_NAME, SqliteJobStore

STATUSES = ("accepted", "completed", "error", "cancelled")
TYPES = ("bulk-export", "bulk-import", "migration")


def job(rnd: random.Random, i: int) -> dict[str, Any]:
    status = STATUSES[i % 4]
    resource: dict[str, Any] = {
        "resourceType": "AsyncJob",
        "id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
        "status": status,
        "type": "bulk-export",
        "requestTime": f"2026-01-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{i % 59:02d}.000Z",
        "request": f"https://example.org/fhir/R4/Patient/$export?_since=2026-01-01&n={i}",
    }
    if status != "accepted":
        resource["transactionTime"] = f"2026-02-{1 + i % 28:02d}T00:00:00.000Z"
    return resource


def write_file(path: Path, n: int) -> None:
    rnd = random.Random(n)
    with path.open("wb") as out:
        for i in range(n):
            out.write(orjson.dumps(job(rnd, i)) + b"\n")


def load(path: Path, data_dir: Path, batch_size: int | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of `fhir-server load`."""
    command = [sys.executable, "-m", "fhir_server.cli", "load", str(path)]
    command += ["--data-dir", str(data_dir)]
    if batch_size is not None:
        command += ["--load-batch-size", str(batch_size)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_SERVER_")}
    with tempfile.NamedTemporaryFile("r") as rss:
        started = time.perf_counter()
        subprocess.run(
            ["/usr/bin/time", "-o", rss.name, "-f", "%M", *command],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        elapsed = time.perf_counter() - started
        return elapsed, int(rss.read().split()[-1])


def limit(path: Path, data_dir: Path) -> float:
    """Jobs/s of one transaction of plain sqlite3 INSERTs of the file's stored rows."""
    store = SqliteJobStore(data_dir / FILE_NAME)

    async def create() -> None:
        await store.open()
        await store.close()

    asyncio.run(create())
    last_updated = now_instant()
    columns = [p.column for p in store.parameters if p.column != "id"]
    live, versions = [], []
    with path.open("rb") as lines:
        for line in lines:
            stamped = stamp(orjson.loads(line), 1, last_updated)
            blob = stored_json(stamped, 1 << 30)
            values = index_values(stamped)
            live.append((stamped["id"], 1, None, blob, *(values[c] for c in columns)))
            versions.append((stamped["id"], 1, last_updated, None, blob, "PUT", 1))
    db = sqlite3.connect(store.path, isolation_level=None)
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA cache_size = -65536")  # as the store's writer
    marks = ", ".join("?" for _ in columns)
    started = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        f"INSERT INTO asyncjob (id, version, owner, resource, {', '.join(columns)}) "
        f"VALUES (?, ?, ?, ?, {marks})",
        live,
    )
    db.executemany(
        "INSERT INTO asyncjob_version (job, version, last_updated, owner, resource, method, "
        "created) VALUES (?, ?, ?, ?, ?, ?, ?)",
        versions,
    )
    db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return len(live) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rss-jobs", type=int, default=0, help="e.g. 1000000; 0: none")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, help="--load-batch-size (default: its default)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    try:
        path = work / "jobs.ndjson"
        write_file(path, args.jobs)
        rows = []
        for n in range(args.rounds):
            elapsed, rss = load(path, work / f"load-{n}", args.batch_size)
            limit_rate = limit(path, work / f"limit-{n}")
            rows.append((elapsed, args.jobs / elapsed, rss, limit_rate))
            shutil.rmtree(work / f"load-{n}")
            shutil.rmtree(work / f"limit-{n}")
        big = None
        if args.rss_jobs:
            big_path = work / "big.ndjson"
            write_file(big_path, args.rss_jobs)
            big = load(big_path, work / "big")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = f"{args.jobs:,}"
    print(
        f"| round | {size} jobs: load s | load jobs/s | peak RSS MiB "
        "| sqlite3 limit jobs/s | ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for i, (elapsed, rate, rss, limit_rate) in enumerate(rows, start=1):
        print(
            f"| {i} | {elapsed:.2f} | {rate:,.0f} | {rss / 1024:.0f} | {limit_rate:,.0f} "
            f"| {rate / limit_rate:.2f} |"
        )
    rate = statistics.median(r[1] for r in rows)
    limit_rate = statistics.median(r[3] for r in rows)
    elapsed = statistics.median(r[0] for r in rows)
    rss = max(r[2] for r in rows)
    print(
        f"| median | {elapsed:.2f} | {rate:,.0f} | {rss / 1024:.0f} | {limit_rate:,.0f} "
        f"| {rate / limit_rate:.2f} |"
    )
    if big is not None:
        print(
            f"\n{args.rss_jobs:,} jobs: load {big[0]:.1f} s ({args.rss_jobs / big[0]:,.0f} "
            f"jobs/s), peak RSS {big[1] / 1024:.0f} MiB"
        )


if __name__ == "__main__":
    main()
