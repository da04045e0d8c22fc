"""Notification latency (write acknowledged → WebSocket delivery) with 1, 100 and 1,000 active
subscriptions, and write throughput with 100 subscriptions beside none, same run.

    python -m benchmarks.notifications [--writes 200]

Starts `fhir-server serve` (one worker, embedded SQLite store with synchronous=FULL, auth off,
the default 50 ms feed poll) pinned to CPU 0 in a fresh data dir; this client runs on CPU 1.
Throughput first: 100 subscriptions are created, then in `--blocks` alternating blocks
switched off (none active) and on again (rebound), `--writes` jobs each; the PUTs per second
of each block, and the ratio of the medians, so the machine's noise falls on both. Then the
latency with 1, 100 and 1,000 active subscriptions: all but one have criteria that the
measured jobs do not match (`AsyncJob?status=completed&type=other-<k>`), one is
`AsyncJob?status=completed`; they are bound over 10 sockets. Each of `--writes` jobs is
created (PUT) then completed (PUT), one at a time over one keep-alive connection; the latency
is from the completing PUT's response to the notification's arrival on the socket. Prints
Markdown tables.
"""

import argparse
import json
import statistics
import threading
import time
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from .serving import pinned_server

SOCKETS = 10


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


def subscribe(http: httpx.Client, base: str, criteria: str) -> tuple[str, str]:
    sub = {
        "resourceType": "Subscription",
        "status": "active",
        "reason": "benchmark",
        "criteria": criteria,
        "channel": {"type": "websocket"},
    }
    created = http.post(f"{base}/Subscription", json=sub)
    assert created.status_code == 201, created.text
    sub_id = created.json()["id"]
    return sub_id, binding_token(http, base, sub_id)


def binding_token(http: httpx.Client, base: str, sub_id: str) -> str:
    answer = http.get(f"{base}/Subscription/{sub_id}/$get-ws-binding-token")
    return str(answer.json()["parameter"][0]["valueString"])


def set_status(http: httpx.Client, base: str, ids: list[str], status: str) -> None:
    for sub_id in ids:
        resource = http.get(f"{base}/Subscription/{sub_id}").json()
        resource["status"] = status
        assert http.put(f"{base}/Subscription/{sub_id}", json=resource).status_code == 200


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
    parser.add_argument("--blocks", type=int, default=3)
    args = parser.parse_args()
    rows = []
    sockets: list[ClientConnection] = []
    without: list[float] = []
    with_100: list[float] = []

    def bind(ws: ClientConnection, token: str) -> None:
        ws.send(json.dumps({"type": "bind-with-token", "payload": {"token": token}}))

    with pinned_server("notifications") as root, httpx.Client(timeout=60) as http:
        base = f"{root}/fhir/R4"
        try:
            receiver = Receiver()
            url = root.replace("http://", "ws://") + "/ws/subscriptions-r4"
            sockets = [connect(url, max_queue=None) for _ in range(SOCKETS)]
            for ws in sockets:
                threading.Thread(target=receiver.listen, args=(ws,), daemon=True).start()
            ids: list[str] = []

            def add(n: int) -> None:
                criteria = (
                    "AsyncJob?status=completed"
                    if n == 0
                    else f"AsyncJob?status=completed&type=other-{n}"
                )
                sub_id, token = subscribe(http, base, criteria)
                ids.append(sub_id)
                bind(sockets[n % SOCKETS], token)

            # Throughput, none against 100, in alternating blocks (the machine's noise
            # falls on both): the 100 are switched off (none) and on again (and rebound).
            for n in range(100):
                add(n)
            for block in range(args.blocks):
                for active in (False, True):
                    set_status(http, base, ids, "active" if active else "off")
                    if active:
                        for n, sub_id in enumerate(ids):
                            bind(sockets[n % SOCKETS], binding_token(http, base, sub_id))
                    time.sleep(0.3)
                    _, rate = phase(
                        http, base, receiver, f"t{block}{active}", args.writes, measured=False
                    )
                    (with_100 if active else without).append(rate)
            set_status(http, base, ids[1:], "off")
            count = 1
            for target in (1, 100, 1000):
                while count < target:
                    add(count)
                    count += 1
                time.sleep(0.5)  # the handshakes
                latencies, throughput = phase(
                    http, base, receiver, f"n{target}", args.writes, measured=target > 0
                )
                rows.append((target, latencies, throughput))
        finally:
            for ws in sockets:
                ws.close()
    print("| active subscriptions | p50 ms | p99 ms | max ms | delivered |")
    print("|---:|---:|---:|---:|---:|")
    for target, latencies, _ in rows:
        if latencies:
            delivered = sum(1 for x in latencies if x != float("inf"))
            p50 = f"{statistics.median(latencies) * 1000:.1f}"
            p99 = f"{percentile(latencies, 99) * 1000:.1f}"
            top = f"{max(latencies) * 1000:.1f}"
            count_text = f"{delivered}/{len(latencies)}"
        else:
            p50 = p99 = top = count_text = "–"
        print(f"| {target:,} | {p50} | {p99} | {top} | {count_text} |")
    print("\n| writes/s | blocks | median |")
    print("|---|---|---:|")
    for label, rates in (("no subscription", without), ("100 subscriptions", with_100)):
        shown = ", ".join(f"{r:.0f}" for r in rates)
        print(f"| {label} | {shown} | {statistics.median(rates):.0f} |")
    ratio = statistics.median(with_100) / statistics.median(without)
    print(f"\nthroughput with 100 subscriptions / with none (medians): {ratio:.2f}")


if __name__ == "__main__":
    main()
