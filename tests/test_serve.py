"""fhir-server serve as a real process: graceful shutdown and several workers."""

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from .conftest import ADMIN_HEADERS

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen[bytes], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited while starting"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


def start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:  # only if a test failed half-way
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigterm_lets_the_in_flight_request_finish(processes: list[subprocess.Popen[bytes]]):
    port = free_port()
    code = (
        "from fhir_server.cli import serve; from fhir_server.config import Settings; "
        f"serve(Settings(port={port}), 1, app='tests.slow_app:create_slow_app')"
    )
    server = start(["-c", code])
    processes.append(server)
    wait_until_up(f"http://127.0.0.1:{port}/healthz", server)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(httpx.get, f"http://127.0.0.1:{port}/readyz", timeout=10)
        time.sleep(0.5)  # the request is now waiting on the (slow) store
        server.send_signal(signal.SIGTERM)
        response = slow.result()
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}
    # uvicorn re-raises SIGTERM once it has shut down cleanly
    assert server.wait(timeout=10) in (0, -signal.SIGTERM)
    assert server.stdout is not None
    assert b"Application shutdown complete" in server.stdout.read()


def test_two_workers_serve_and_accept_each_others_cursors(
    processes: list[subprocess.Popen[bytes]],
):
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir/R4"
    args = ["-m", "fhir_server.cli", "serve", "--port", str(port), "--workers", "2"]
    server = start([*args, "--load", "examples/jobs"])
    processes.append(server)
    wait_until_up(f"http://127.0.0.1:{port}/healthz", server)
    first = httpx.get(f"{base}/AsyncJob?_count=1", headers=ADMIN_HEADERS).json()
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    # A fresh connection each time, so the pages are served by both workers.
    statuses = [httpx.get(next_url, headers=ADMIN_HEADERS).status_code for _ in range(16)]
    assert statuses == [200] * 16
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=15) == 0
