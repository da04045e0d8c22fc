"""What each request leaves behind: its access-log line and its metrics."""

from .access_log import AccessLog
from .metrics import Metrics


class Telemetry:
    def __init__(self, metrics: Metrics | None, access_log: AccessLog | None) -> None:
        self.metrics = metrics
        self.access_log = access_log

    def record(
        self, request_id: str, method: str, route: str, path: str, status: int, seconds: float
    ) -> None:
        if self.metrics is not None:
            self.metrics.observe(method, route, status, seconds)
        if self.access_log is not None:
            self.access_log.record(request_id, method, route, path, status, seconds)
