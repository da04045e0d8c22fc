"""A `fhir-server serve` for the one-off benchmarks (bundles, notifications): one worker,
auth off, in a fresh data dir, pinned to CPU 0 while the benchmark's client runs on CPU 1."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") else []


@contextmanager
def pinned_server(name: str) -> Iterator[str]:
    """The server's root URL once it is ready; the server is stopped and its data dir removed
    afterwards. This process moves to CPU 1."""
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1})
    data_dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    env = {**os.environ, "FHIR_SERVER_AUTH": "off", "FHIR_SERVER_DATA_DIR": str(data_dir / "d")}
    command = [*pinned(0), sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL, stderr=None
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{root}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start") from None
            time.sleep(0.2)
        yield root
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)
