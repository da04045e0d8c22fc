"""Plain GET reads and searches are answered before Starlette's middleware, with exactly the
answers the whole stack gives; whatever the hot path does not answer, the stack does."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.storage.base import JobStore

from .conftest import ADMIN_HEADERS, BASE, bearer, make_job, put_job

# Set per request, so never equal between two answers.
PER_REQUEST_HEADERS = {"x-request-id"}


class Apps:
    """The same store behind two apps: `hot` as built, `whole` with no route dispatched
    before the middleware (every request takes the whole stack)."""

    def __init__(self, store: JobStore, settings: Settings) -> None:
        self.hot = create_app(settings, store=store)
        self.whole = create_app(settings, store=store)
        self.whole.hot_routes.routes.clear()

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
        return await self.get(self.hot, path, headers), await self.get(self.whole, path, headers)


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
async def test_a_read_is_answered_as_the_whole_stack_answers_it(
    apps: Apps, path: str, headers: dict[str, str] | None
):
    hot, whole = await apps.both(path, headers)
    assert hot.status_code == whole.status_code
    assert headers_of(hot) == headers_of(whole)
    assert hot.content == whole.content


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
async def test_a_search_is_answered_as_the_whole_stack_answers_it(apps: Apps, query: str):
    hot, whole = await apps.both(f"AsyncJob{query}")
    assert hot.status_code == whole.status_code
    assert headers_of(hot).keys() == headers_of(whole).keys()
    assert hot.headers["content-type"] == whole.headers["content-type"]
    hot_body, whole_body = hot.json(), whole.json()
    if hot_body["resourceType"] == "Bundle":
        hot_body, whole_body = (
            without_bundle_instance(hot_body),
            without_bundle_instance(whole_body),
        )
    assert hot_body == whole_body


async def test_next_links_page_the_same_on_both_paths(apps: Apps):
    pages: list[list[str]] = []
    for app in (apps.hot, apps.whole):
        url: str | None = "AsyncJob?_count=1"
        ids: list[str] = []
        while url is not None:
            body = (await apps.get(app, url)).json()
            ids += [entry["resource"]["id"] for entry in body.get("entry", [])]
            url = next((link["url"] for link in body["link"] if link["relation"] == "next"), None)
        pages.append(ids)
    assert pages[0] == pages[1]
    assert sorted(pages[0]) == ["job-1", "job-2", "job-3", "owned-1"]


async def test_a_plain_read_is_answered_without_the_middleware_stack(apps: Apps):
    response = await apps.get(apps.hot, "AsyncJob/job-1")
    assert response.status_code == 200
    assert apps.hot.middleware_stack is None  # built only when a request first needs it


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("AsyncJob/job-1", {}),  # no token: the authentication layer answers 401
        ("AsyncJob/job-1", bearer("reader", "system/AsyncJob.s")),  # the guard answers 403
        ("AsyncJob/job-1/_history", None),  # not a hot route
    ],
)
async def test_what_the_hot_path_would_answer_differently_takes_the_whole_stack(
    apps: Apps, path: str, headers: dict[str, str] | None
):
    await apps.get(apps.hot, path, headers)
    assert apps.hot.middleware_stack is not None


async def test_a_get_with_a_body_over_the_limit_is_refused_before_it_is_read(
    store: JobStore, settings: Settings
):
    app = create_app(settings.model_copy(update={"max_body_bytes": 10}), store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
        response = await http.request("GET", "AsyncJob", headers=ADMIN_HEADERS, content=b"x" * 100)
    assert response.status_code == 413
    assert response.json()["issue"][0]["code"] == "too-costly"


async def test_a_hot_read_carries_the_request_id_it_was_sent(apps: Apps):
    response = await apps.get(
        apps.hot, "AsyncJob/job-1", {**ADMIN_HEADERS, "X-Request-ID": "poller-42"}
    )
    assert response.headers["x-request-id"] == "poller-42"


async def test_an_unexpected_error_in_a_hot_handler_is_a_500_operation_outcome(
    store: JobStore, settings: Settings
):
    class BrokenReads:
        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        async def get(self, job_id: str) -> None:
            raise RuntimeError("a bug, not an outage")

    app = create_app(settings, store=BrokenReads())  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
        response = await http.get("AsyncJob/job-1", headers=ADMIN_HEADERS)
    assert response.status_code == 500
    assert response.json()["issue"][0]["code"] == "exception"
    assert "a bug" not in response.text


async def test_behind_a_path_prefix_a_read_is_answered_the_same(apps: Apps):
    answers = []
    for app in (apps.hot, apps.whole):
        transport = httpx.ASGITransport(app=app, root_path="/jobs-api")
        async with httpx.AsyncClient(transport=transport, headers=ADMIN_HEADERS) as http:
            answers.append(await http.get("http://testserver/jobs-api/fhir/R4/AsyncJob/job-1"))
    hot, whole = answers
    assert hot.status_code == whole.status_code == 200
    assert headers_of(hot) == headers_of(whole)
    assert hot.content == whole.content
    assert apps.hot.middleware_stack is None  # the hot path answered it
