"""The one request path: every request passes RequestPipeline (request id, telemetry,
authentication, body limit); the app's own routes are called without the router, with the
answers the router gives."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.api.application import FhirServerApp
from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.storage.base import JobStore

from .conftest import ADMIN_HEADERS, BASE, bearer, make_job, other_stores_open, put_job

HOST = "http://testserver"
# Set per request, so never equal between two answers.
PER_REQUEST_HEADERS = {"x-request-id"}


def through_the_router(app: FhirServerApp) -> FhirServerApp:
    """The app with direct dispatch off: every request goes through Starlette's router."""
    app.direct_dispatch = False
    return app


class Apps:
    """The same store behind two apps: `direct` as built, `routed` through the router."""

    def __init__(self, store: JobStore, settings: Settings) -> None:
        self.direct = create_app(settings, store=store)
        self.routed = through_the_router(create_app(settings, store=store))

    async def get(
        self, app: Starlette, path: str, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            sent = ADMIN_HEADERS if headers is None else headers
            return await http.get(path, headers=sent)

    async def both(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[httpx.Response, httpx.Response]:
        return await self.get(self.direct, path, headers), await self.get(
            self.routed, path, headers
        )


@pytest.fixture
async def apps(store: JobStore, settings: Settings) -> AsyncIterator[Apps]:
    await put_job(store, id="job-1", status="accepted", type="bulk-export")
    await put_job(store, id="job-2", status="completed", transactionTime="2026-01-02T00:00:00Z")
    await put_job(store, id="job-3", status="accepted")
    gone = await put_job(store, id="gone-1")
    await store.delete("gone-1", expected_version=gone.version)
    await store.save(make_job(id="owned-1"), expected_version=0, owner="someone-else")
    yield Apps(store, settings)


def headers_of(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in PER_REQUEST_HEADERS}


def without_bundle_instance(body: dict[str, Any]) -> dict[str, Any]:
    """A searchset without what each answer makes anew: its id and meta.lastUpdated."""
    return {k: v for k, v in body.items() if k not in ("id", "meta")}


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("AsyncJob/job-1", None),
        ("AsyncJob/job-1", {**ADMIN_HEADERS, "Accept": "application/json"}),
        ("AsyncJob/job-1", {**ADMIN_HEADERS, "Accept": "application/fhir+json; q=0.9, */*"}),
        ("AsyncJob/job-1?_format=json&_pretty=true", None),
        ("AsyncJob/job-1?_elements=status", None),
        ("AsyncJob/unknown-job", None),
        ("AsyncJob/gone-1", None),
        ("AsyncJob/not%20an%20id", None),
        ("AsyncJob/job-1", {**ADMIN_HEADERS, "Accept": "application/xml"}),
        ("AsyncJob/job-1", {}),
        ("AsyncJob/job-1", {"Authorization": "Bearer not-a-token"}),
        ("AsyncJob/job-1", bearer("reader", "system/AsyncJob.s")),
        ("AsyncJob/owned-1", bearer("reader", "system/AsyncJob.rs")),
        ("AsyncJob/owned-1", bearer("someone-else", "system/AsyncJob.rs")),
    ],
)
async def test_a_read_is_answered_as_the_routed_stack_answers_it(
    apps: Apps, path: str, headers: dict[str, str] | None
):
    direct, routed = await apps.both(path, headers)
    assert direct.status_code == routed.status_code
    assert headers_of(direct) == headers_of(routed)
    assert direct.content == routed.content


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?status=accepted",
        "?status=accepted,completed&_count=1",
        "?_sort=-request-time&_count=2&_total=accurate",
        "?_summary=count",
        "?_elements=status&_count=1",
        "?status:not=accepted",
        "?_count=abc",
        "?unknown-parameter=1",
    ],
)
async def test_a_search_is_answered_the_same_with_or_without_the_router(apps: Apps, query: str):
    direct, routed = await apps.both(f"AsyncJob{query}")
    assert direct.status_code == routed.status_code
    assert headers_of(direct).keys() == headers_of(routed).keys()
    assert direct.headers["content-type"] == routed.headers["content-type"]
    direct_body, routed_body = direct.json(), routed.json()
    if direct_body["resourceType"] == "Bundle":
        direct_body, routed_body = (
            without_bundle_instance(direct_body),
            without_bundle_instance(routed_body),
        )
    assert direct_body == routed_body


async def test_next_links_page_the_same_on_both_paths(apps: Apps):
    pages: list[list[str]] = []
    for app in (apps.direct, apps.routed):
        url: str | None = "AsyncJob?_count=1"
        ids: list[str] = []
        while url is not None:
            body = (await apps.get(app, url)).json()
            ids += [entry["resource"]["id"] for entry in body.get("entry", [])]
            url = next((link["url"] for link in body["link"] if link["relation"] == "next"), None)
        pages.append(ids)
    assert pages[0] == pages[1]
    assert sorted(pages[0]) == ["job-1", "job-2", "job-3", "owned-1"]


def client(app: ASGIApp, **kwargs: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url=HOST, **kwargs)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/fhir/R4/AsyncJob/job-1"),
        ("GET", "/fhir/R4/AsyncJob?status=accepted"),
        ("GET", "/fhir/R4/AsyncJob/job-1/_history"),
        ("POST", "/fhir/R4/AsyncJob/_search"),
        ("DELETE", "/fhir/R4/AsyncJob/job-3"),
        ("GET", "/fhir/R4/job/job-1/status"),
        ("GET", "/Jobs/job-1"),
        ("GET", "/fhir/R4/metadata"),
        ("GET", "/healthz"),
        ("GET", "/no/such/path"),
        ("PATCH", "/fhir/R4/AsyncJob/job-1"),
    ],
)
async def test_every_request_carries_the_request_id_it_was_sent(apps: Apps, method: str, path: str):
    async with client(apps.direct, headers=ADMIN_HEADERS) as http:
        response = await http.request(method, path, headers={"X-Request-ID": "poller-42"})
    assert response.headers["x-request-id"] == "poller-42"


class SeenPaths:
    """A middleware added by an embedder (rate limit, tracing, audit): what it saw."""

    def __init__(self, app: ASGIApp, seen: list[str]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append(scope["path"])
        await self.app(scope, receive, send)


async def test_a_middleware_added_later_sees_reads_and_searches(
    store: JobStore, settings: Settings
):
    await put_job(store, id="job-1")
    app = create_app(settings, store=store)
    seen: list[str] = []
    app.add_middleware(SeenPaths, seen=seen)
    async with client(app, headers=ADMIN_HEADERS) as http:
        assert (await http.get("/fhir/R4/AsyncJob/job-1")).status_code == 200
        assert (await http.get("/fhir/R4/AsyncJob")).status_code == 200
    assert seen == ["/fhir/R4/AsyncJob/job-1", "/fhir/R4/AsyncJob"]


@pytest.mark.parametrize(
    ("path", "envelope"),
    [("/fhir/R4/AsyncJob", False), ("/fhir/R4/AsyncJob/job-1", False), ("/Jobs/job-1", True)],
)
async def test_a_get_with_a_body_over_the_limit_is_refused_before_it_is_read(
    store: JobStore, settings: Settings, path: str, envelope: bool
):
    app = create_app(settings.model_copy(update={"max_body_bytes": 10}), store=store)
    async with client(app, headers=ADMIN_HEADERS) as http:
        response = await http.request("GET", path, content=b"x" * 100)
    assert response.status_code == 413
    if envelope:
        assert response.json()["error"]["type"] == "request_malformed"
    else:
        assert response.json()["issue"][0]["code"] == "too-costly"


async def test_an_unknown_path_without_a_token_is_refused_as_unauthenticated(apps: Apps):
    async with client(apps.direct) as http:
        response = await http.get("/no/such/path")
    assert response.status_code == 401
    assert response.json()["issue"][0]["code"] == "login"


async def test_an_unknown_path_with_a_token_is_not_found(apps: Apps):
    async with client(apps.direct, headers=ADMIN_HEADERS) as http:
        response = await http.get("/no/such/path")
    assert response.status_code == 404


async def test_an_unexpected_error_is_a_500_operation_outcome_and_the_handler_runs_once(
    store: JobStore, settings: Settings
):
    calls: list[str] = []

    class BrokenReads:
        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        async def get(self, job_id: str) -> None:
            calls.append(job_id)
            raise RuntimeError("a bug, not an outage")

    app = create_app(settings, store=BrokenReads())  # type: ignore[arg-type]
    async with client(app, headers=ADMIN_HEADERS) as http:
        response = await http.get("/fhir/R4/AsyncJob/job-1")
    assert response.status_code == 500
    assert response.json()["issue"][0]["code"] == "exception"
    assert "a bug" not in response.text
    assert calls == ["job-1"]


async def test_behind_a_path_prefix_a_read_is_answered_the_same(apps: Apps):
    answers = []
    for app in (apps.direct, apps.routed):
        transport = httpx.ASGITransport(app=app, root_path="/jobs-api")
        async with httpx.AsyncClient(transport=transport, headers=ADMIN_HEADERS) as http:
            answers.append(await http.get("http://testserver/jobs-api/fhir/R4/AsyncJob/job-1"))
    direct, routed = answers
    assert direct.status_code == routed.status_code == 200
    assert headers_of(direct) == headers_of(routed)
    assert direct.content == routed.content


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("GET", "/fhir/R4/AsyncJob/job-1", "/fhir/R4/AsyncJob/{id}"),
        ("GET", "/fhir/R4/AsyncJob", "/fhir/R4/AsyncJob"),
        ("GET", "/Jobs/job-1", "/Jobs/{id}"),
        ("GET", "/no/such/path", "unmatched"),
        ("PATCH", "/fhir/R4/AsyncJob/job-1", "unmatched"),
    ],
)
async def test_metrics_name_each_request_by_its_route_template(
    apps: Apps, method: str, path: str, route: str
):
    async with client(apps.direct, headers=ADMIN_HEADERS) as http:
        await http.request(method, path)
        metrics = (await http.get("/metrics")).text
    assert f'route="{route}"' in metrics


async def test_a_body_still_arriving_at_the_timeout_is_a_408_that_closes_the_connection(
    store: JobStore, settings: Settings
):
    """The pipeline's clock and the connection's (api/connection.py) run side by side; on a
    busy machine the pipeline's may answer first. Its 408 must end the connection by itself:
    the rest of the body could otherwise be read as the next request."""
    app = create_app(settings.model_copy(update={"body_timeout": 0.2}), store=store)
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/fhir/R4/AsyncJob",
        "raw_path": b"/fhir/R4/AsyncJob",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", ADMIN_HEADERS["Authorization"].encode()),
            (b"content-type", b"application/fhir+json"),
            (b"content-length", b"100"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    first: list[Message] = [{"type": "http.request", "body": b"{", "more_body": True}]

    async def receive() -> Message:
        if first:
            return first.pop()
        await asyncio.Event().wait()  # the rest never comes
        raise AssertionError("unreachable")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async with other_stores_open(app):
        await asyncio.wait_for(app(scope, receive, send), 5)
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
