"""Real processes for the tests that need them: `fhir-server serve`, `load`, a job writer."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from .conftest import TEST_JWT_SECRET

ROOT = Path(__file__).parent.parent
# The process serving each base URL running_server yields (one worker: the server itself).
SERVER_PROCESSES: dict[str, "subprocess.Popen[bytes]"] = {}

# Writes AsyncJobs into the SQLite file argv[1], argv[2] of them (0: forever), printing each
# id once save() has returned, i.e. once the write is acknowledged.
WRITER = """
import asyncio, sys, uuid
from pathlib import Path
from fhir_server.storage.sqlite import SqliteJobStore

async def main(path, count):
    store = SqliteJobStore(Path(path))
    await store.open()
    written = 0
    while count == 0 or written < count:
        job = {
            "resourceType": "AsyncJob", "id": str(uuid.uuid4()), "status": "accepted",
            "requestTime": "2026-01-01T00:00:00.000Z", "request": "https://example.org/x",
        }
        await store.save(job, expected_version=0)
        print(job["id"], flush=True)
        written += 1
    await store.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def clean_env() -> dict[str, str]:
    """This environment without FHIR_SERVER_* settings, so only the arguments count."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FHIR_SERVER_")}


def start_writer(path: Path, count: int) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(count)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=clean_env(),
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=clean_env(),
        timeout=60,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_server(data_dir: Path, *args: str, workers: int = 1) -> Iterator[str]:
    """`fhir-server serve` on a free port; yields its FHIR base URL; stops it gracefully.
    Requests need a token from tests.conftest (ADMIN_HEADERS, bearer())."""
    port = free_port()
    command = [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port)]
    command += ["--workers", str(workers), "--data-dir", str(data_dir), "--log-level", "warning"]
    with _serving([*command, *args], {}, port, data_dir) as base:
        yield base


@contextmanager
def running_example(module: str, data_dir: Path) -> Iterator[str]:
    """`python -m <module>` (an example service, configured by FHIR_SERVER_* variables) on a
    free port; yields its FHIR base URL; stops it gracefully."""
    port = free_port()
    settings = {"FHIR_SERVER_PORT": str(port), "FHIR_SERVER_DATA_DIR": str(data_dir)}
    with _serving([sys.executable, "-m", module], settings, port, data_dir) as base:
        yield base


@contextmanager
def _serving(
    command: list[str], settings: dict[str, str], port: int, data_dir: Path
) -> Iterator[str]:
    env = {**clean_env(), "FHIR_SERVER_JWT_SECRET": TEST_JWT_SECRET, **settings}  # tests sign
    with open(data_dir.parent / f"server-{port}.log", "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", server)
        base = f"http://127.0.0.1:{port}/fhir/R4"
        SERVER_PROCESSES[base] = server
        yield base
    finally:
        SERVER_PROCESSES.pop(f"http://127.0.0.1:{port}/fhir/R4", None)
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_until_ready(url: str, server: "subprocess.Popen[bytes]") -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not become ready within 30 s")
