"""Structured access log: one JSON object per request on stdout, for log shippers."""

import logging
import sys
import time

import orjson

ACCESS_LOG = logging.getLogger("fhir_server.access")


class JsonLineHandler(logging.StreamHandler):
    """Writes each record's message as it is: the line is JSON already."""

    def format(self, record: logging.LogRecord) -> str:
        # Formatter("%(message)s") would give the same text through several more calls.
        return record.getMessage()


def configure_access_log() -> None:
    """Write access lines as bare JSON to stdout (idempotent: once per process)."""
    if ACCESS_LOG.handlers:
        return
    ACCESS_LOG.addHandler(JsonLineHandler(sys.stdout))
    ACCESS_LOG.setLevel(logging.INFO)
    ACCESS_LOG.propagate = False  # the root logger's text format would wrap the JSON


def log_request(
    request_id: str, method: str, route: str, path: str, status: int, seconds: float
) -> None:
    if not ACCESS_LOG.isEnabledFor(logging.INFO):
        return
    line = {
        "ts": utc_timestamp(time.time()),
        "event": "request",
        "request_id": request_id,
        "method": method,
        "route": route,
        "path": path,
        "status": status,
        "latency_ms": round(seconds * 1000, 3),
    }
    # A record made directly skips Logger.info's caller lookup (a stack walk per request);
    # handlers, levels and filters apply as usual.
    record = logging.LogRecord(
        ACCESS_LOG.name, logging.INFO, __file__, 0, orjson.dumps(line).decode(), None, None
    )
    ACCESS_LOG.handle(record)


_second: tuple[int, str] = (-1, "")


def utc_timestamp(now: float) -> str:
    """`now` as an ISO-8601 UTC instant with milliseconds; the date and time up to the second
    are formatted once per second (datetime.isoformat per request cost more than the rest)."""
    global _second
    whole = int(now)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((now - whole) * 1000):03d}Z"
