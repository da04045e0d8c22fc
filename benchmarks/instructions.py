"""Instructions per request of a server process, counted by valgrind's callgrind: a figure that
does not move with the load of a shared machine, to compare two trees where requests/s swing.

    python -m benchmarks.instructions --tree . --data-dir /tmp/bench-data [--token] [-n 200]
    python -m benchmarks.instructions --tree /tmp/c436025 --data-dir /tmp/bench-data-old

The tree's own benchmarks.serve_seeded serves (seeding 10,000 jobs into the data dir first, if
missing); one kept-alive connection sends n reads by id, then n searches, counted with callgrind's
instrumentation switched on for them only (`callgrind_control`). Needs valgrind.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from fhir_server.auth.tokens import FULL_SCOPES, mint

from .run import JWT_SECRET, LAUNCH

JOBS = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tree", type=Path, required=True, help="source tree to serve")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--token", action="store_true", help="auth on, an admin token sent")
    parser.add_argument("-n", type=int, default=200, help="requests of each kind")
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = Path(tempfile.mkdtemp(prefix="callgrind-"))
    tree = str(args.tree.resolve())
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FHIR_SERVER_")},
        "FHIR_SERVER_DATA_DIR": str(args.data_dir),
        "FHIR_SERVER_AUTH": "on" if args.token else "off",
        "FHIR_SERVER_JWT_SECRET": JWT_SECRET,
        "FHIR_SERVER_ACCESS_LOG": "false",
        "PYTHONPATH": tree,
        "PYTHONHASHSEED": "0",
    }
    command = [sys.executable, "-c", LAUNCH, "--jobs", str(JOBS), "--port", str(port)]
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    valgrind.append(f"--callgrind-out-file={out}/cg")
    server = subprocess.Popen(
        [*valgrind, *command],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    token = mint(JWT_SECRET.encode(), "benchmark-admin", FULL_SCOPES, timedelta(hours=1))
    headers = f"Host: 127.0.0.1:{port}\r\n" + (f"Authorization: Bearer {token}\r\n" * args.token)
    try:
        connection = connect(port, server)
        reads = [f"/fhir/R4/AsyncJob/bench-{i * 37 % JOBS:07d}" for i in range(args.n)]
        searches = ["/fhir/R4/AsyncJob?status=accepted&_count=20"] * args.n
        for name, paths in (("read", reads), ("search", searches)):
            for path in paths[:20]:  # warm-up, not counted
                get(connection, path, headers)
            control(server, "-z")
            control(server, "-i", "on")
            for path in paths:
                get(connection, path, headers)
            control(server, "-i", "off")
            control(server, "-d", name)
            time.sleep(1)
            total = sum(program_total(f) for f in out.glob("cg.*"))
            for dump in out.glob("cg.*"):
                dump.unlink()
            print(f"{tree} token={args.token} {name}: {total / args.n / 1000:.1f}k instructions")
    finally:
        server.terminate()
        server.wait()


def connect(port: int, server: "subprocess.Popen[bytes]") -> socket.socket:
    for _ in range(1200):  # valgrind starts a server slowly
        try:
            return socket.create_connection(("127.0.0.1", port))
        except OSError:
            if server.poll() is not None:
                raise SystemExit("the server exited: run its command without valgrind") from None
            time.sleep(0.5)
    raise SystemExit("the server did not answer")


def get(connection: socket.socket, path: str, headers: str) -> None:
    connection.sendall(f"GET {path} HTTP/1.1\r\n{headers}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"{path}: {head[:100]!r}")
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += connection.recv(65536)


def control(server: "subprocess.Popen[bytes]", *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(server.pid)], capture_output=True, check=True)


def program_total(dump: Path) -> int:
    annotated = subprocess.run(["callgrind_annotate", str(dump)], capture_output=True, text=True)
    found = re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", annotated.stdout)
    return int(found.group(1).replace(",", "")) if found else 0


if __name__ == "__main__":
    main()
