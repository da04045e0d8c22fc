"""Structured access log: one JSON object per request on stdout, for log shippers.

Requests are buffered, then formatted and written together once per FLUSH_SECONDS (and at
shutdown): a logging record and a write per request cost more than the rest of a read by id
(~35 µs of ~110 µs), and even a line serialized per request and held until the flush cost
~4 µs, most of it allocating (orjson's output buffers, thousands kept alive), against ~1 µs
for a tuple now and a line formatted and dropped at once when flushing.
A crash can lose at most the last FLUSH_SECONDS of lines, as with nginx's buffered log.
"""

import asyncio
import sys
import time
from typing import BinaryIO

import orjson

FLUSH_SECONDS = 0.2
MAX_BUFFERED_LINES = 1000  # a burst is written at once rather than held in memory


class AccessLog:
    def __init__(self, stream: BinaryIO | None = None) -> None:
        self.stream = stream  # None: sys.stdout as it is when written (tests replace it)
        # (time, request_id, method, route, path, status, seconds) per request, not yet written
        self._entries: list[tuple[float, str, str, str, str, int, float]] = []
        self._flush_loop: asyncio.AbstractEventLoop | None = None  # where a flush is pending

    def record(
        self, request_id: str, method: str, route: str, path: str, status: int, seconds: float
    ) -> None:
        self._entries.append((time.time(), request_id, method, route, path, status, seconds))
        if len(self._entries) >= MAX_BUFFERED_LINES:
            self.flush()
        else:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        pending = self._flush_loop
        # A flush pending on a running loop writes every buffered line: nothing to do, and no
        # asyncio.get_running_loop per request (on Python 3.11 it makes a getpid system call).
        if pending is not None and pending.is_running():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a synchronous caller): write at once
            self.flush()
            return
        self._flush_loop = loop  # none was pending, or it was on a loop that has ended
        loop.call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        self._flush_loop = None
        if not self._entries:
            return
        entries, self._entries = self._entries, []
        lines = bytearray()
        for now, request_id, method, route, path, status, seconds in entries:
            line = {
                "ts": utc_timestamp(now),
                "event": "request",
                "request_id": request_id,
                "method": method,
                "route": route,
                "path": path,
                "status": status,
                "latency_ms": round(seconds * 1000, 3),
            }
            lines += orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)
        stream = self.stream or sys.stdout.buffer
        try:
            stream.write(lines)
            stream.flush()
        except (OSError, ValueError):  # stdout closed or gone: the lines cannot be written
            pass


_second: tuple[int, str] = (-1, "")


def utc_timestamp(now: float) -> str:
    """`now` as an ISO-8601 UTC instant with milliseconds; the date and time up to the second
    are formatted once per second (datetime.isoformat per request cost more than the rest)."""
    global _second
    whole = int(now)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((now - whole) * 1000):03d}Z"
