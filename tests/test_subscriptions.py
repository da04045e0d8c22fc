"""The Subscription resource over HTTP (create, read, search, update, delete; validation;
ownership; the per-owner limit; $get-ws-binding-token) and the WebSocket channel's security
over a real server: binding tokens, delivery-time access checks, the socket limit."""

import json
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from fhir_server.app import create_app
from fhir_server.config import Settings

from .conftest import ADMIN_HEADERS, BASE, TEST_JWT_SECRET, bearer, make_job
from .servers import SERVER_PROCESSES, running_server

SCOPES = "system/AsyncJob.cruds system/Subscription.cruds"
ALICE = bearer("alice", SCOPES)
BOB = bearer("bob", SCOPES)


Clients = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def make_http(tmp_path: Path) -> Clients:
    """A client of an app (its lifespan run: the Subscription store opened) on settings."""

    @asynccontextmanager
    async def make(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(
            Settings(
                data_dir=tmp_path / "data",
                secret_key="test-secret",
                jwt_secret=TEST_JWT_SECRET,
                **settings,
            )
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, headers=ADMIN_HEADERS) as http:
                yield http

    return make


@pytest.fixture
async def client(make_http: Clients) -> AsyncIterator[httpx.AsyncClient]:
    async with make_http() as http:
        yield http


def subscription(**fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "active",
        "reason": "tests",
        "criteria": "AsyncJob?status=completed",
        "channel": {"type": "websocket"},
        **fields,
    }


async def test_a_subscription_is_created_read_searched_updated_and_deleted(
    client: httpx.AsyncClient,
):
    created = await client.post(
        f"{BASE}/Subscription", json=subscription(status="requested"), headers=ALICE
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "active"  # accepted at once
    sub_id = body["id"]
    hook = subscription(
        criteria="AsyncJob?type=bulk-export",
        channel={
            "type": "rest-hook",
            "endpoint": "https://hooks.example/notify",
            "payload": "application/fhir+json",
            "header": ["Authorization: Bearer abc"],
        },
        extension=[
            {
                "url": "https://medplum.com/fhir/StructureDefinition/subscription-secret",
                "valueString": "s3cret",
            }
        ],
    )
    assert (await client.post(f"{BASE}/Subscription", json=hook, headers=ALICE)).status_code == 201

    async def found(**params: str) -> list[str]:
        bundle = (await client.get(f"{BASE}/Subscription", params=params, headers=ALICE)).json()
        return [e["resource"]["channel"]["type"] for e in bundle.get("entry", [])]

    assert await found(type="websocket") == ["websocket"]
    assert await found(type="rest-hook") == ["rest-hook"]
    assert await found(url="https://hooks.example/notify") == ["rest-hook"]
    assert await found(criteria="AsyncJob?status=completed") == ["websocket"]
    assert sorted(await found(status="active")) == ["rest-hook", "websocket"]
    assert await found(status="off") == []

    off = {**body, "status": "off"}
    updated = await client.put(f"{BASE}/Subscription/{sub_id}", json=off, headers=ALICE)
    assert updated.status_code == 200 and updated.json()["status"] == "off"
    assert (await client.delete(f"{BASE}/Subscription/{sub_id}", headers=ALICE)).status_code == 204
    assert (await client.get(f"{BASE}/Subscription/{sub_id}", headers=ALICE)).status_code == 410


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        ({"criteria": "AsyncJob?status=completed&_count=5"}, 400, "_count"),
        ({"criteria": "AsyncJob?_sort=-_lastUpdated&_elements=id"}, 400, "_elements, _sort"),
        ({"criteria": "Patient?name=x"}, 400, "Patient"),
        ({"criteria": "AsyncJob?colour=red"}, 400, "colour"),
        ({"channel": {"type": "email", "endpoint": "mailto:a@b.c"}}, 400, "email"),
        ({"channel": {"type": "rest-hook"}}, 400, "channel.endpoint"),
        ({"channel": {"type": "rest-hook", "endpoint": "ftp://x"}}, 400, "http(s) URL"),
        (
            {"channel": {"type": "rest-hook", "endpoint": "https://x", "payload": "text/xml"}},
            400,
            "text/xml",
        ),
        (
            {"channel": {"type": "rest-hook", "endpoint": "https://x", "header": ["no colon"]}},
            400,
            "Name: value",
        ),
        ({"reason": None}, 400, "reason"),
        ({"status": "paused"}, 422, "paused"),
        (
            {
                "extension": [
                    {
                        "url": "https://medplum.com/fhir/StructureDefinition/subscription-secret",
                        "valueString": "",
                    }
                ]
            },
            400,
            "subscription-secret",
        ),
    ],
)
async def test_an_invalid_subscription_is_refused_and_nothing_stored(
    client: httpx.AsyncClient, change: dict[str, Any], status: int, says: str
):
    resource = {k: v for k, v in subscription(**change).items() if v is not None}
    response = await client.post(f"{BASE}/Subscription", json=resource, headers=ALICE)
    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert says in response.text
    assert (await client.get(f"{BASE}/Subscription", headers=ALICE)).json()["total"] == 0


async def test_subscriptions_are_owned_like_jobs(client: httpx.AsyncClient):
    created = await client.post(f"{BASE}/Subscription", json=subscription(), headers=ALICE)
    sub_id = created.json()["id"]
    assert (await client.get(f"{BASE}/Subscription/{sub_id}", headers=BOB)).status_code == 404
    assert (await client.get(f"{BASE}/Subscription", headers=BOB)).json()["total"] == 0
    token = await client.get(f"{BASE}/Subscription/{sub_id}/$get-ws-binding-token", headers=BOB)
    assert token.status_code == 404
    assert (await client.delete(f"{BASE}/Subscription/{sub_id}", headers=BOB)).status_code == 404
    assert (await client.get(f"{BASE}/Subscription", headers=ADMIN_HEADERS)).json()["total"] == 1
    jobs_only = bearer("alice", "system/AsyncJob.cruds")
    assert (await client.get(f"{BASE}/Subscription", headers=jobs_only)).status_code == 403
    v1 = bearer("alice", "system/Subscription.read")
    assert (await client.get(f"{BASE}/Subscription/{sub_id}", headers=v1)).status_code == 200


async def test_a_subscription_needs_read_access_to_what_it_watches(client: httpx.AsyncClient):
    # It could never notify: refused when written, not silent forever.
    subscriptions_only = bearer("alice", "system/Subscription.cruds")
    refused = await client.post(
        f"{BASE}/Subscription", json=subscription(), headers=subscriptions_only
    )
    assert refused.status_code == 403
    issue = refused.json()["issue"][0]
    assert issue["code"] == "forbidden"
    assert issue["expression"] == ["Subscription.criteria"]
    assert "may not read AsyncJob" in issue["diagnostics"]
    assert (await client.get(f"{BASE}/Subscription", headers=ADMIN_HEADERS)).json()["total"] == 0
    readers = bearer("alice", "system/Subscription.cruds system/AsyncJob.rs")
    created = await client.post(f"{BASE}/Subscription", json=subscription(), headers=readers)
    assert created.status_code == 201


async def test_the_subscriptions_per_owner_are_limited(make_http: Clients):
    async with make_http(max_subscriptions_per_owner=2) as limited:
        for _ in range(2):
            ok = await limited.post(f"{BASE}/Subscription", json=subscription(), headers=ALICE)
            assert ok.status_code == 201
        refused = await limited.post(f"{BASE}/Subscription", json=subscription(), headers=ALICE)
        assert refused.status_code == 403
        assert "FHIR_SERVER_MAX_SUBSCRIPTIONS_PER_OWNER" in refused.text
        other = await limited.post(f"{BASE}/Subscription", json=subscription(), headers=BOB)
        assert other.status_code == 201


async def test_the_binding_token_operation_answers_token_expiration_and_url(
    client: httpx.AsyncClient,
):
    sub_id = (await client.post(f"{BASE}/Subscription", json=subscription(), headers=ALICE)).json()[
        "id"
    ]
    answer = await client.get(f"{BASE}/Subscription/{sub_id}/$get-ws-binding-token", headers=ALICE)
    assert answer.status_code == 200, answer.text
    parameters = {p["name"]: p for p in answer.json()["parameter"]}
    assert set(parameters) == {"token", "expiration", "websocket-url"}
    assert parameters["websocket-url"]["valueUrl"] == "ws://testserver/ws/subscriptions-r4"
    assert parameters["expiration"]["valueDateTime"].endswith("Z")
    # A binding token is no access token.
    as_bearer = {"Authorization": f"Bearer {parameters['token']['valueString']}"}
    assert (await client.get(f"{BASE}/AsyncJob", headers=as_bearer)).status_code == 401


# -- over a real server: the socket --


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("subs") / "data"
    with running_server(data_dir, "--max-websockets", "3", "--feed-poll-interval", "0.02") as base:
        yield base


def binding(base: str, headers: dict[str, str], criteria: str = "AsyncJob?status=completed") -> str:
    created = httpx.post(
        f"{base}/Subscription", json=subscription(criteria=criteria), headers=headers
    )
    assert created.status_code == 201, created.text
    answer = httpx.get(
        f"{base}/Subscription/{created.json()['id']}/$get-ws-binding-token", headers=headers
    )
    return str(answer.json()["parameter"][0]["valueString"])


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://").removesuffix("/fhir/R4") + "/ws/subscriptions-r4"


def receive(socket: ClientConnection, timeout: float = 5) -> dict[str, Any]:
    return json.loads(socket.recv(timeout=timeout))


def bind(socket: ClientConnection, token: str) -> dict[str, Any]:
    socket.send(json.dumps({"type": "bind-with-token", "payload": {"token": token}}))
    return receive(socket)


def events(socket: ClientConnection, seconds: float) -> list[str]:
    """The ids of the resources notified within `seconds` (heartbeats aside)."""
    ids = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = receive(socket, left)
        except TimeoutError:
            break
        entries = message.get("entry", [])
        if entries and entries[0]["resource"]["type"] == "event-notification":
            ids.append(entries[1]["fullUrl"].rsplit("/", 1)[1])
    return ids


def complete(base: str, headers: dict[str, str], job_id: str) -> None:
    job = make_job(id=job_id)
    httpx.put(f"{base}/AsyncJob/{job_id}", json=job, headers=headers).raise_for_status()
    done = {**job, "status": "completed", "transactionTime": "2026-01-01T00:01:00.000Z"}
    httpx.put(f"{base}/AsyncJob/{job_id}", json=done, headers=headers).raise_for_status()


def test_ping_handshake_and_several_subscriptions_on_one_socket(server: str):
    with connect(ws_url(server)) as socket:
        socket.send(json.dumps({"type": "ping"}))
        assert receive(socket) == {"type": "pong"}
        first = bind(socket, binding(server, ALICE, "AsyncJob?status=completed"))
        second = bind(socket, binding(server, ALICE, "AsyncJob?_id=two-subs"))
        for handshake in (first, second):
            status = handshake["entry"][0]["resource"]
            assert status["type"] == "handshake"
            assert status["subscription"]["reference"].startswith("Subscription/")
        complete(server, ALICE, "two-subs")
        # The job's create matches the _id subscription; its completion both.
        assert events(socket, 1.5) == ["two-subs", "two-subs", "two-subs"]


def test_a_deletion_is_notified_without_a_body(server: str):
    with connect(ws_url(server)) as socket:
        bind(socket, binding(server, ALICE, "AsyncJob?_id=to-delete"))
        httpx.put(f"{server}/AsyncJob/to-delete", json=make_job(id="to-delete"), headers=ALICE)
        assert events(socket, 1) == ["to-delete"]
        httpx.delete(f"{server}/AsyncJob/to-delete", headers=ALICE).raise_for_status()
        message = receive(socket)
        status, entry = message["entry"]
        assert status["resource"]["notificationEvent"][0]["focus"] == {
            "reference": "AsyncJob/to-delete/_history/2"
        }
        assert "resource" not in entry
        assert entry["request"] == {"method": "DELETE", "url": "AsyncJob/to-delete"}


def test_criteria_cannot_widen_access_to_another_owners_job(server: str):
    with connect(ws_url(server)) as socket:
        bind(socket, binding(server, ALICE, "AsyncJob?_id=bobs-secret"))
        complete(server, BOB, "bobs-secret")
        assert events(socket, 1) == []


def test_a_token_that_loses_access_stops_receiving(server: str):
    short = bearer("alice", SCOPES, exp=int(time.time()) + 3)
    with connect(ws_url(server)) as socket:
        bind(socket, binding(server, short, "AsyncJob?status=completed"))
        complete(server, ALICE, "before-expiry")
        assert events(socket, 1) == ["before-expiry"]
        time.sleep(max(0.0, 3.2 - 1))
        complete(server, ALICE, "after-expiry")
        assert events(socket, 1.5) == []


def test_a_binding_token_binds_only_its_subscription_and_owner(server: str):
    with connect(ws_url(server)) as socket:
        refused = bind(socket, "not-a-token")
        assert refused["resourceType"] == "OperationOutcome"
        # An access token is no binding token.
        access = ALICE["Authorization"].removeprefix("Bearer ")
        assert bind(socket, access)["resourceType"] == "OperationOutcome"
        # A subscription deleted after its token was issued binds nothing.
        created = httpx.post(f"{server}/Subscription", json=subscription(), headers=ALICE).json()
        token = httpx.get(
            f"{server}/Subscription/{created['id']}/$get-ws-binding-token", headers=ALICE
        ).json()["parameter"][0]["valueString"]
        httpx.delete(f"{server}/Subscription/{created['id']}", headers=ALICE).raise_for_status()
        time.sleep(0.3)
        assert bind(socket, token)["resourceType"] == "OperationOutcome"


def test_sockets_per_process_are_limited(server: str):
    with ExitStack() as held:
        for _ in range(3):
            held.enter_context(connect(ws_url(server)))
        with connect(ws_url(server)) as extra, pytest.raises(ConnectionClosed) as closed:
            extra.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        assert "retry later" in closed.value.rcvd.reason


def test_a_graceful_shutdown_closes_the_sockets_cleanly(tmp_path: Path):
    with running_server(tmp_path / "data") as base, connect(ws_url(base)) as socket:
        bind(socket, binding(base, ALICE))
        SERVER_PROCESSES[base].send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                socket.recv(timeout=10)
        # A close frame with a code saying "come back" (going away / service restart), not
        # a dropped connection.
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code in (1001, 1012)


def test_the_access_log_has_a_line_per_websocket_session(tmp_path: Path):
    data_dir = tmp_path / "data"
    with running_server(data_dir) as base:
        with connect(ws_url(base)) as socket:
            socket.send(json.dumps({"type": "ping"}))
            receive(socket)
        port = base.split(":")[2].split("/")[0]
        log = tmp_path / f"server-{port}.log"
        deadline = time.monotonic() + 5
        lines: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not lines:
            time.sleep(0.2)
            lines = [
                json.loads(line)
                for line in log.read_text().splitlines()
                if line.startswith("{") and '"WEBSOCKET"' in line
            ]
    [line] = lines
    assert line["path"] == "/ws/subscriptions-r4"
    assert line["status"] == 101
    assert line["route"] == "/ws/subscriptions-r4 (closed 1000)"


def test_a_change_written_through_one_process_reaches_a_socket_held_by_another(tmp_path: Path):
    """Two server processes on one data dir, as the workers of one server are: the socket is
    held by the first, the job written through the second."""
    data_dir = tmp_path / "data"
    with (
        running_server(data_dir) as first,
        running_server(data_dir) as second,
        connect(ws_url(first)) as socket,
    ):
        bind(socket, binding(first, ALICE, "AsyncJob?status=completed"))
        complete(second, ALICE, "written-elsewhere")
        assert events(socket, 2) == ["written-elsewhere"]
