"""Prometheus /metrics: requests and latency by route template and status, jobs by status."""

import re

import httpx

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.observability.metrics import Metrics
from fhir_server.storage.base import JobStore

from .conftest import (
    ADMIN_HEADERS,
    BASE,
    TEST_JWT_SECRET,
    MakeClient,
    bearer,
    put_job,
)
from .faulty_store import FaultyStore

METRICS = "http://testserver/metrics"
READ = 'method="GET",route="/fhir/R4/AsyncJob/{id}"'


def sample(text: str, name: str, labels: str) -> float:
    """The value of one sample line, e.g. sample(text, "x_total", 'a="b"')."""
    series = f"{name}{{{labels}}}" if labels else name
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert match, f"no {series} in /metrics"
    return float(match.group(1))


async def test_metrics_are_prometheus_text(client: httpx.AsyncClient):
    response = await client.get(METRICS)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")


async def test_requests_are_counted_by_route_template_and_status(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1")
    await client.get("AsyncJob/job-1")
    await client.get("AsyncJob/job-1")
    await client.get("AsyncJob/unknown")
    text = (await client.get(METRICS)).text
    assert sample(text, "fhir_server_http_requests_total", READ + ',status="200"') == 2
    assert sample(text, "fhir_server_http_requests_total", READ + ',status="404"') == 1


async def test_latency_histogram_has_buckets_per_route_and_status(client: httpx.AsyncClient):
    await client.get("AsyncJob?status=accepted")
    text = (await client.get(METRICS)).text
    labels = 'method="GET",route="/fhir/R4/AsyncJob",status="200"'
    name = "fhir_server_http_request_duration_seconds"
    assert sample(text, f"{name}_bucket", 'le="+Inf",' + labels) == 1
    assert sample(text, f"{name}_count", labels) == 1
    assert sample(text, f"{name}_sum", labels) > 0


async def test_post_search_is_labelled_with_its_own_template(client: httpx.AsyncClient):
    await client.post("AsyncJob/_search", data={"status": "accepted"})
    text = (await client.get(METRICS)).text
    labels = 'method="POST",route="/fhir/R4/AsyncJob/_search",status="200"'
    assert sample(text, "fhir_server_http_requests_total", labels) == 1


async def test_unknown_paths_share_one_unmatched_label(client: httpx.AsyncClient):
    await client.get("http://testserver/a/b")
    await client.get("http://testserver/c")
    text = (await client.get(METRICS)).text
    labels = 'method="GET",route="unmatched",status="404"'
    assert sample(text, "fhir_server_http_requests_total", labels) == 2


async def test_jobs_are_counted_by_status_at_scrape(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, status="accepted")
    await put_job(store, status="accepted")
    await put_job(store, status="completed")
    text = (await client.get(METRICS)).text
    assert sample(text, "fhir_server_jobs", 'status="accepted"') == 2
    assert sample(text, "fhir_server_jobs", 'status="completed"') == 1
    assert sample(text, "fhir_server_jobs", 'status="error"') == 0
    assert sample(text, "fhir_server_store_up", "") == 1


async def test_metrics_still_answer_while_the_database_is_down(store: JobStore, settings: Settings):
    faulty = FaultyStore(store)
    await put_job(store, status="accepted")
    app = create_app(settings, store=faulty)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=ADMIN_HEADERS) as http:
        await http.get(METRICS)
        faulty.down = True
        response = await http.get(METRICS)
    assert response.status_code == 200
    assert sample(response.text, "fhir_server_store_up", "") == 0
    assert "fhir_server_jobs{" not in response.text


async def test_metrics_without_a_token_are_401(make_client: MakeClient, store: JobStore):
    await put_job(store, status="accepted")
    async with make_client(headers={}) as http:
        response = await http.get(METRICS)
    assert response.status_code == 401
    assert response.json()["issue"][0]["code"] == "login"
    assert "fhir_server_jobs" not in response.text


async def test_another_owner_cannot_watch_the_job_counts_move(
    make_client: MakeClient, store: JobStore
):
    """Every owner's jobs are counted: only the admin scope may read them."""
    await put_job(store, status="accepted")  # bob's, say
    async with make_client(sub="mallory", scope="system/AsyncJob.cruds") as mallory:
        response = await mallory.get(METRICS)
    assert response.status_code == 403
    assert "fhir_server_jobs" not in response.text
    assert response.json()["issue"][0]["diagnostics"] == "This request needs the scope system/*.*"
    assert 'scope="system/*.*"' in response.headers["www-authenticate"]


async def test_metrics_need_the_configured_admin_scope(store: JobStore):
    settings = Settings(secret_key="k", jwt_secret=TEST_JWT_SECRET, admin_scope="ops/admin")
    app = create_app(settings, store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport) as http:
        assert (await http.get(METRICS, headers=ADMIN_HEADERS)).status_code == 403
        assert (await http.get(METRICS, headers=bearer(scope="ops/admin"))).status_code == 200


async def test_metrics_answer_anyone_with_auth_off(store: JobStore):
    app = create_app(Settings(secret_key="k", auth="off"), store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        assert (await http.get(METRICS)).status_code == 200


def test_a_latency_on_a_bucket_bound_counts_in_that_bucket():
    metrics = Metrics()
    metrics.observe("GET", "/x", 200, 0.0005)
    metrics.observe("GET", "/x", 200, 0.0006)
    text = metrics.exposition().decode()
    name = "fhir_server_http_request_duration_seconds_bucket"
    labels = 'method="GET",route="/x",status="200"'
    assert sample(text, name, 'le="0.0005",' + labels) == 1
    assert sample(text, name, 'le="0.001",' + labels) == 2
    assert sample(text, name, 'le="+Inf",' + labels) == 2


def test_unknown_methods_share_one_label():
    metrics = Metrics()
    metrics.observe("BREW", "/x", 405, 0.001)
    metrics.observe("PROPFIND", "/x", 405, 0.001)
    text = metrics.exposition().decode()
    assert (
        sample(text, "fhir_server_http_requests_total", 'method="other",route="/x",status="405"')
        == 2
    )
