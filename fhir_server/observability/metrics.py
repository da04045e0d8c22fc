"""Prometheus metrics: requests and latency by route template and status; jobs by status;
notifications (deliveries, failures, retries, feed lag; REST-hook errors and lag).

Each app has its own registry (no global state), so several apps can live in one process.
The jobs gauge is counted from the store when /metrics is scraped, never on the hot path.
"""

import asyncio
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.utils import floatToGoString

from ..resources.asyncjob import STATUSES
from ..search.query import JobQuery, TokenMatch
from ..storage.base import JobStore, StoreUnavailable

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestSeries:
    """Requests and latency by method, route template and status as plain counts, turned into
    Prometheus families when scraped: Counter.inc and Histogram.observe took a lock per value
    (three per request), the largest part of what telemetry cost a read."""

    def __init__(self) -> None:
        # (method, route, status) -> [count per bucket (the last is +Inf)..., sum of seconds]
        self._series: dict[tuple[str, str, int], list[float]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method if method in _METHODS else "other", route, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = [0] * (len(LATENCY_BUCKETS) + 2)
        series[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # `le` bounds are inclusive
        series[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        labels = ("method", "route", "status")
        requests = CounterMetricFamily(
            "fhir_server_http_requests",
            "HTTP requests by method, route template and status",
            labels=labels,
        )
        latency = HistogramMetricFamily(
            "fhir_server_http_request_duration_seconds",
            "HTTP request latency by method, route template and status",
            labels=labels,
        )
        bounds = [*map(floatToGoString, LATENCY_BUCKETS), "+Inf"]
        for (method, route, status), series in list(self._series.items()):
            values = [method, route, str(status)]
            cumulative = list(accumulate(series[:-1]))
            requests.add_metric(values, cumulative[-1])
            latency.add_metric(values, list(zip(bounds, cumulative, strict=True)), series[-1])
        yield requests
        yield latency


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = RequestSeries()
        self.registry.register(self.requests)
        self.jobs = Gauge(
            "fhir_server_jobs", "Live AsyncJobs by status", ("status",), registry=self.registry
        )
        self.store_up = Gauge(
            "fhir_server_store_up",
            "1 if the store answered the last scrape, else 0",
            registry=self.registry,
        )
        self.rest_hook_errors = Counter(
            "fhir_server_rest_hook_errors",
            "REST-hook Subscriptions set to status error after too many consecutive failures",
            registry=self.registry,
        )
        self.rest_hook_lag = Gauge(
            "fhir_server_rest_hook_lag",
            "Changes between the newest in the jobs' feed and the furthest-behind REST-hook "
            "Subscription this worker process delivers",
            registry=self.registry,
        )
        # Notifications (fhir_server/notifications): per worker process.
        self.deliveries = Counter(
            "fhir_server_notification_deliveries",
            "Notifications delivered, by channel",
            ("channel",),
            registry=self.registry,
        )
        self.delivery_failures = Counter(
            "fhir_server_notification_failures",
            "Notifications not delivered, by channel and reason",
            ("channel", "reason"),
            registry=self.registry,
        )
        self.delivery_retries = Counter(
            "fhir_server_notification_retries",
            "Deliveries tried again, by channel",
            ("channel",),
            registry=self.registry,
        )
        self.feed_lag = Gauge(
            "fhir_server_change_feed_lag",
            "Changes written but not yet read by this worker's tailer, by resource type",
            ("type",),
            registry=self.registry,
        )
        self.websockets = Gauge(
            "fhir_server_websockets",
            "Open subscription WebSockets of this worker process",
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.observe(method, route, status, seconds)

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
