"""Prometheus metrics: requests and latency by route template and status; jobs by status.

Each app has its own registry (no global state), so several apps can live in one process.
The jobs gauge is counted from the store when /metrics is scraped, never on the hot path.
"""

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..resources.asyncjob import STATUSES
from ..search.query import JobQuery, TokenMatch
from ..storage.base import JobStore, StoreUnavailable

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("method", "route", "status")
        self.requests = Counter(
            "fhir_server_http_requests",
            "HTTP requests by method, route template and status",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "fhir_server_http_request_duration_seconds",
            "HTTP request latency by method, route template and status",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.jobs = Gauge(
            "fhir_server_jobs", "Live AsyncJobs by status", ("status",), registry=self.registry
        )
        self.store_up = Gauge(
            "fhir_server_store_up",
            "1 if the store answered the last scrape, else 0",
            registry=self.registry,
        )
        # labels() takes a lock and hashes; look each label set up once.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            name = method if method in _METHODS else "other"
            values = (name, route, str(status))
            children = (self.requests.labels(*values), self.latency.labels(*values))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    async def count_jobs(self, store: JobStore) -> None:
        """Refresh the jobs gauge; on a store outage drop it and report store_up 0."""
        queries = [
            JobQuery(where=((TokenMatch("status", frozenset({s})),),), limit=0) for s in STATUSES
        ]
        try:
            counts = await asyncio.gather(*(store.count(q) for q in queries))
        except StoreUnavailable:
            self.jobs.clear()
            self.store_up.set(0)
            return
        for status, count in zip(STATUSES, counts, strict=True):
            self.jobs.labels(status).set(count)
        self.store_up.set(1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


async def metrics_endpoint(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    await metrics.count_jobs(request.app.state.store)
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def routes() -> list[BaseRoute]:
    return [Route("/metrics", metrics_endpoint, methods=["GET"])]
