"""What a client can make a real `fhir-server serve` hold: request heads are bounded in size
and time, bodies in time, idle connections close, connections are counted, and none of it
slows `/healthz` for everyone else. Raw sockets on 127.0.0.1, so the bytes are the client's."""

import contextlib
import resource
import select
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

import orjson
import pytest

from fhir_server import cli
from fhir_server.config import Settings

from .conftest import ADMIN_HEADERS, make_job
from .servers import running_server

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
MAX_CONNECTIONS = 40
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
TOKEN = ADMIN_HEADERS["Authorization"].encode()


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    data_dir = tmp_path_factory.mktemp("data")
    options = ["--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT)]
    options += ["--keep-alive-timeout", "1", "--max-connections", str(MAX_CONNECTIONS)]
    with running_server(data_dir, *options) as base:
        yield urlparse(base).port or 0


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def send(sock: socket.socket, data: bytes) -> None:
    """Send what the server takes: it may close the connection half-way through."""
    with contextlib.suppress(OSError):
        sock.sendall(data)


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except OSError:
        pass
    return received


def exchange(port: int, request: bytes) -> bytes:
    with connect(port) as sock:
        send(sock, request)
        return read_all(sock)


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length, leaving the connection open."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    length = int(header(received, b"content-length") or 0)
    while len(received.split(b"\r\n\r\n", 1)[1]) < length:
        received += sock.recv(65536)
    return received


def trickle(sock: socket.socket, data: bytes, interval: float = 0.1) -> None:
    """Send one byte per interval until the server answers or closes."""
    for byte in data:
        if select.select([sock], [], [], interval)[0]:
            return
        send(sock, bytes([byte]))


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def header(response: bytes, name: bytes) -> bytes | None:
    head = response.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def body(response: bytes) -> Any:
    return orjson.loads(response.split(b"\r\n\r\n", 1)[1])


def diagnostics(response: bytes) -> str:
    outcome = body(response)
    assert outcome["resourceType"] == "OperationOutcome"
    return str(outcome["issue"][0]["diagnostics"])


def healthz_seconds(port: int) -> float:
    start = time.monotonic()
    response = exchange(port, HEALTHZ)
    assert status(response) == 200
    return time.monotonic() - start


def slowest_healthz_while(port: int, attacks: list[Callable[[], Any]]) -> tuple[float, list[Any]]:
    """Run the attacks concurrently; the slowest /healthz answer meanwhile and their results."""
    slowest = 0.0
    with ThreadPoolExecutor(len(attacks)) as pool:
        running = [pool.submit(attack) for attack in attacks]
        time.sleep(0.05)  # the attacks have started
        while not all(f.done() for f in running):
            slowest = max(slowest, healthz_seconds(port))
            time.sleep(0.02)
        return slowest, [f.result() for f in running]


# -- the size of a request head ------------------------------------------------------------


def test_huge_authorization_headers_are_431_and_do_not_slow_healthz(port: int):
    token = b"Bearer eyJhbGciOiJIUzI1NiJ9." + b"e" * (5 * 1024 * 1024)
    attack = (
        b"GET /fhir/R4/AsyncJob HTTP/1.1\r\nHost: test\r\nAuthorization: " + token + b"\r\n\r\n"
    )
    slowest, answers = slowest_healthz_while(port, [lambda: exchange(port, attack)] * 4)
    assert [status(answer) for answer in answers] == [431] * 4
    assert diagnostics(answers[0]) == "The request head is over 65536 bytes"
    assert slowest < 0.2


def test_header_over_the_header_limit_is_431_naming_it(port: int):
    response = exchange(port, b"GET /healthz HTTP/1.1\r\nX-Big: " + b"x" * 9000 + b"\r\n\r\n")
    assert status(response) == 431
    assert diagnostics(response) == "Header x-big is over 8192 bytes"
    assert header(response, b"connection") == b"close"
    assert header(response, b"x-request-id")


def test_authorization_just_under_the_header_limit_reaches_the_app_and_is_401(port: int):
    token = b"Bearer " + b"e" * 8000
    request = b"GET /fhir/R4/AsyncJob HTTP/1.1\r\nHost: test\r\nAuthorization: " + token
    response = exchange(port, request + b"\r\nConnection: close\r\n\r\n")
    assert status(response) == 401
    assert diagnostics(response) == "The Authorization header is longer than 4096 bytes"


def test_head_over_the_limit_in_many_small_headers_is_431(port: int):
    headers = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 4000) for i in range(20))
    response = exchange(port, b"GET /healthz HTTP/1.1\r\n" + headers + b"\r\n")
    assert status(response) == 431
    assert diagnostics(response) == "The request head is over 65536 bytes"


def test_request_target_over_the_header_limit_is_414(port: int):
    target = b"/fhir/R4/AsyncJob?status=" + b"a" * 9000
    response = exchange(port, b"GET " + target + b" HTTP/1.1\r\nHost: test\r\n\r\n")
    assert status(response) == 414
    assert diagnostics(response) == "The request target is over 8192 bytes"


def test_head_refused_on_an_adapter_path_is_answered_in_the_envelope(port: int):
    request = b"GET /Jobs/some-job HTTP/1.1\r\nHost: test\r\nX-Big: " + b"x" * 9000
    response = exchange(port, request + b"\r\n\r\n")
    assert status(response) == 431
    envelope = body(response)
    assert envelope["error"] == {
        "type": "request_malformed",
        "message": "Header x-big is over 8192 bytes",
    }
    assert envelope["meta"]["code"] == 431
    assert envelope["meta"]["request_id"] == header(response, b"x-request-id").decode()


# -- the time a request may take -----------------------------------------------------------


def test_head_trickled_past_the_header_timeout_is_408(port: int):
    start = time.monotonic()
    with connect(port) as sock:
        trickle(sock, b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"x" * 100 + b"\r\n\r\n")
        response = read_all(sock)
    assert status(response) == 408
    assert diagnostics(response) == "The request head took over 1 s"
    assert time.monotonic() - start < HEADER_TIMEOUT + 1


def test_connection_that_sends_nothing_is_closed_after_the_header_timeout(port: int):
    start = time.monotonic()
    with connect(port) as sock:
        assert read_all(sock) == b""
    assert HEADER_TIMEOUT - 0.1 < time.monotonic() - start < HEADER_TIMEOUT + 1


def test_idle_connections_do_not_slow_healthz_and_are_closed(port: int):
    idle = [connect(port) for _ in range(30)]
    try:
        assert healthz_seconds(port) < 0.2
        deadline = time.monotonic() + HEADER_TIMEOUT + 1
        for sock in idle:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            assert read_all(sock) == b""
    finally:
        for sock in idle:
            sock.close()


def test_body_trickled_past_the_body_timeout_is_408_and_the_connection_closes(port: int):
    job = orjson.dumps(make_job(id=None))
    head = b"POST /fhir/R4/AsyncJob HTTP/1.1\r\nHost: test\r\nAuthorization: " + TOKEN
    head += b"\r\nContent-Type: application/fhir+json\r\nContent-Length: %d\r\n\r\n" % len(job)
    start = time.monotonic()
    with connect(port) as sock:
        send(sock, head)
        trickle(sock, job)
        response = read_all(sock)
    assert status(response) == 408
    assert diagnostics(response) == "The request body did not arrive within 1 s"
    assert header(response, b"connection") == b"close"
    assert time.monotonic() - start < BODY_TIMEOUT + 1


def test_body_the_app_does_not_read_cannot_hold_the_connection(port: int):
    start = time.monotonic()
    with connect(port) as sock:
        send(sock, b"GET /healthz HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n")
        response = read_response(sock)
        trickle(sock, b"x" * 1000)
        assert read_all(sock) == b""
    assert status(response) == 200
    assert time.monotonic() - start < BODY_TIMEOUT + 1


def test_kept_alive_connection_closes_when_idle(port: int):
    with connect(port) as sock:
        send(sock, b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        assert status(read_response(sock)) == 200
        start = time.monotonic()
        assert read_all(sock) == b""
    assert time.monotonic() - start < 2


def test_a_request_beyond_max_connections_is_503(port: int):
    held = [connect(port) for _ in range(MAX_CONNECTIONS)]
    try:
        response = exchange(port, HEALTHZ)
    finally:
        for sock in held:
            sock.close()
    assert status(response) == 503
    time.sleep(0.1)  # the server has seen them close
    assert status(exchange(port, HEALTHZ)) == 200


# -- the cost of a body --------------------------------------------------------------------


def test_large_valid_bodies_are_validated_without_slowing_healthz(port: int):
    # 1000 extensions: 3000 JSON values, a few hundred ms of validation each
    extensions = [{"url": "https://example.org/x", "valueInteger": i} for i in range(1000)]
    job = orjson.dumps(make_job(id=None, extension=extensions))
    request = b"POST /fhir/R4/AsyncJob HTTP/1.1\r\nHost: test\r\nAuthorization: " + TOKEN
    request += b"\r\nContent-Type: application/fhir+json\r\nConnection: close"
    request += b"\r\nContent-Length: %d\r\n\r\n" % len(job) + job
    slowest, answers = slowest_healthz_while(port, [lambda: exchange(port, request)] * 2)
    assert [status(answer) for answer in answers] == [201, 201]
    assert slowest < 0.2


# -- file descriptors ----------------------------------------------------------------------


def test_serving_raises_the_open_file_limit_to_the_hard_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 1024), hard))
    try:
        assert cli.connection_limit(Settings()) == 1000
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_connection_limit_leaves_files_for_the_store_under_a_low_limit(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (256, 256))
    assert cli.connection_limit(Settings()) == 256 - cli.RESERVED_FILES
