"""Notification latency (write acknowledged → WebSocket delivery) with 1, 100 and 1,000 active
subscriptions, and write throughput with 100 subscriptions beside none, same run.

    python -m benchmarks.notifications [--writes 200]

Starts `fhir-server serve` (one worker, embedded SQLite store with synchronous=FULL, auth off,
the default 50 ms feed poll) pinned to CPU 0 in a fresh data dir; this client runs on CPU 1.
Phases, in this order: no subscription, 1, 100, 1,000. In each, all but one subscription have
criteria that the measured jobs do not match (`AsyncJob?status=completed&type=other-<k>`),
so every change is matched against all of them; one is `AsyncJob?status=completed`. They are
bound over 10 sockets. Each of `--writes` jobs is created (PUT) then completed (PUT), one at a
time over one keep-alive connection; the latency is from the completing PUT's response to the
notification's arrival on the socket. Throughput: the writes (both PUTs) per second, timed
alone. Prints a Markdown table.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

SOCKETS = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") else []


def job(job_id: str, status: str = "accepted") -> dict[str, Any]:
    resource = {
        "resourceType": "AsyncJob",
        "id": job_id,
        "status": status,
        "type": "bulk-export",
        "requestTime": "2026-01-01T00:00:00.000Z",
        "request": "https://example.org/fhir/R4/$export",
    }
    if status == "completed":
        resource["transactionTime"] = "2026-01-01T00:01:00.000Z"
    return resource


class Receiver:
    """Arrival times of notifications, by job id, from every socket."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.lock = threading.Lock()

    def listen(self, ws: ClientConnection) -> None:
        try:
            for message in ws:
                now = time.perf_counter()
                bundle = json.loads(message)
                entries = bundle.get("entry") or []
                if len(entries) == 2 and entries[0]["resource"]["type"] == "event-notification":
                    job_id = entries[1]["resource"]["id"]
                    with self.lock:
                        self.arrived.setdefault(job_id, now)
        except Exception:
            return


def subscribe(http: httpx.Client, base: str, criteria: str) -> str:
    sub = {
        "resourceType": "Subscription",
        "status": "active",
        "reason": "benchmark",
        "criteria": criteria,
        "channel": {"type": "websocket"},
    }
    created = http.post(f"{base}/Subscription", json=sub)
    assert created.status_code == 201, created.text
    answer = http.get(f"{base}/Subscription/{created.json()['id']}/$get-ws-binding-token")
    return str(answer.json()["parameter"][0]["valueString"])


def phase(
    http: httpx.Client, base: str, receiver: Receiver, name: str, writes: int, measured: bool
) -> tuple[list[float], float]:
    latencies = []
    acked: dict[str, float] = {}
    started = time.perf_counter()
    for n in range(writes):
        job_id = f"{name}-{n}"
        assert http.put(f"{base}/AsyncJob/{job_id}", json=job(job_id)).status_code == 201
        done = http.put(f"{base}/AsyncJob/{job_id}", json=job(job_id, "completed"))
        acked[job_id] = time.perf_counter()
        assert done.status_code == 200, done.text
    elapsed = time.perf_counter() - started
    if measured:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(receiver.arrived.keys() & acked.keys()) < writes:
            time.sleep(0.05)
        for job_id, ack in acked.items():
            arrived = receiver.arrived.get(job_id)
            latencies.append(float("inf") if arrived is None else arrived - ack)
    return latencies, 2 * writes / elapsed


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args()
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1})
    data_dir = Path(tempfile.mkdtemp(prefix="bench-notifications-"))
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    base = f"{root}/fhir/R4"
    env = {**os.environ, "FHIR_SERVER_AUTH": "off", "FHIR_SERVER_DATA_DIR": str(data_dir / "d")}
    command = [*pinned(0), sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL, stderr=None
    )
    rows = []
    sockets: list[ClientConnection] = []
    try:
        with httpx.Client(timeout=60) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http.get(f"{root}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise SystemExit("the server did not start") from None
                time.sleep(0.2)
            receiver = Receiver()
            url = root.replace("http://", "ws://") + "/ws/subscriptions-r4"
            sockets = [connect(url, max_queue=None) for _ in range(SOCKETS)]
            for ws in sockets:
                threading.Thread(target=receiver.listen, args=(ws,), daemon=True).start()
            count = 0
            for target in (0, 1, 100, 1000):
                while count < target:
                    criteria = (
                        "AsyncJob?status=completed"
                        if count == 0
                        else f"AsyncJob?status=completed&type=other-{count}"
                    )
                    token = subscribe(http, base, criteria)
                    message = {"type": "bind-with-token", "payload": {"token": token}}
                    sockets[count % SOCKETS].send(json.dumps(message))
                    count += 1
                time.sleep(0.5)  # the handshakes
                latencies, throughput = phase(
                    http, base, receiver, f"n{target}", args.writes, measured=target > 0
                )
                rows.append((target, latencies, throughput))
    finally:
        for ws in sockets:
            ws.close()
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)
    print("| active subscriptions | p50 ms | p99 ms | max ms | delivered | writes/s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for target, latencies, throughput in rows:
        if latencies:
            delivered = sum(1 for x in latencies if x != float("inf"))
            p50 = f"{statistics.median(latencies) * 1000:.1f}"
            p99 = f"{percentile(latencies, 99) * 1000:.1f}"
            top = f"{max(latencies) * 1000:.1f}"
            count_text = f"{delivered}/{len(latencies)}"
        else:
            p50 = p99 = top = count_text = "–"
        print(f"| {target:,} | {p50} | {p99} | {top} | {count_text} | {throughput:.0f} |")
    none = next(t for n, _, t in rows if n == 0)
    hundred = next(t for n, _, t in rows if n == 100)
    print(f"\nthroughput with 100 subscriptions / with none: {hundred / none:.2f}")


if __name__ == "__main__":
    main()
