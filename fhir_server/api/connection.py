"""The HTTP connection below the app: uvicorn's httptools protocol, with bounds on what a
client can make a worker hold before a request reaches the app.

Left alone, uvicorn reads a request head of any size for as long as the client takes, and
httptools joins the pieces of a long header by copying them (a 50 MB header costs seconds
and hundreds of MB before the app sees a byte). This protocol refuses, in front of the app:

- a request target over max_header_bytes (414), a header over it or a head over
  max_head_bytes (431); a head still arriving is counted as its bytes come, so an endless
  one is cut off at the limit plus one read;
- a head not in within header_timeout seconds of the connection opening or the request's
  first byte (408; a connection that sent nothing in that time is closed without one);
- a body still arriving body_timeout seconds after its head: the connection closes once the
  answer is out (the pipeline answers a body the app waits for with a 408 at that time).

Refusals are answered as the app answers: an OperationOutcome, or the eHealth envelope under
the adapter's paths. Idle kept-alive connections close after uvicorn's timeout_keep_alive.
"""

import asyncio
import math
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ..observability.request_ids import REQUEST_ID_HEADER, assign_request_id
from .ehealth import ADAPTER_PREFIXES, error_envelope
from .errors import render_fhir_error
from .http_status import ProtocolError

HEAD = "head"
BODY = "body"


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int = 8 * 1024
    max_head_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0


class HeadRefused(Exception):
    """Raised in a parser callback to stop parsing a head that breaks a limit: uvicorn then
    answers a parse error (send_400_response), which answers the refusal instead."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    # The per-request callbacks call the base class by name: super() costs measurably on every
    # request at this level.

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.head_bytes: int | None = None  # read of a head not complete yet
        self.last_read = 0
        self.refusal: ProtocolError | None = None
        # What is being waited for (HEAD, BODY or None) and by when (None: not timed yet).
        # A request that arrives in one read is never timed: the clock starts only when a
        # read leaves it incomplete. One timer per connection, moved only when it fires
        # early, so requests on a kept-alive connection start no timers.
        self.phase: str | None = None
        self.deadline: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.phase = HEAD  # a silent connection is waiting for its first head
        self._start_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.last_read = len(data)
        HttpToolsProtocol.data_received(self, data)
        if self.phase is None or self.transport.is_closing():
            return
        if self.head_bytes is not None:
            self.head_bytes += len(data)
            if self.head_bytes > self.limits.max_head_bytes:
                self._refuse(self._too_large())
                return
        if self.deadline is None:
            self._start_clock()

    def on_message_begin(self) -> None:
        HttpToolsProtocol.on_message_begin(self)
        self.head_bytes = 0
        if self.phase is None:  # a new connection's head is timed from its opening
            self.phase, self.deadline = HEAD, None

    def on_headers_complete(self) -> None:
        # A head that came in reads of max_header_bytes in all broke no limit.
        if (self.head_bytes or 0) + self.last_read > self.limits.max_header_bytes:
            self.refusal = self._head_error()
            if self.refusal is not None:
                raise HeadRefused
        self.head_bytes = None
        self.phase, self.deadline = BODY, None
        HttpToolsProtocol.on_headers_complete(self)

    def on_message_complete(self) -> None:
        self.phase = None
        HttpToolsProtocol.on_message_complete(self)

    def send_400_response(self, msg: str) -> None:
        if self.refusal is None:
            super().send_400_response(msg)
        else:
            self._refuse(self.refusal)

    def _head_error(self) -> ProtocolError | None:
        limit = self.limits.max_header_bytes
        size = len(self.url)
        for name, value in self.headers:
            size += len(name) + len(value)
            if len(name) + len(value) > limit:
                header = name[:40].decode("latin-1")
                return ProtocolError(431, "too-costly", f"Header {header} is over {limit} bytes")
        if size > self.limits.max_head_bytes or len(self.url) > limit:
            return self._too_large()
        return None

    def _too_large(self) -> ProtocolError:
        """414 for a request target over max_header_bytes, else 431 for the whole head."""
        if len(getattr(self, "url", b"")) > self.limits.max_header_bytes:
            limit = self.limits.max_header_bytes
            return ProtocolError(414, "too-costly", f"The request target is over {limit} bytes")
        limit = self.limits.max_head_bytes
        return ProtocolError(431, "too-costly", f"The request head is over {limit} bytes")

    # -- time --------------------------------------------------------------------------------

    def _start_clock(self) -> None:
        seconds = self.limits.header_timeout if self.phase == HEAD else self.limits.body_timeout
        self.deadline = self.loop.time() + seconds
        if self.deadline < self.timer_at:
            self._arm(self.deadline)

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._on_timer)
        self.timer_at = when

    def _on_timer(self) -> None:
        self.timer, self.timer_at = None, math.inf
        if self.phase is None or self.deadline is None or self.transport.is_closing():
            return  # between requests: uvicorn's keep-alive timer closes an idle connection
        if self.loop.time() < self.deadline:
            self._arm(self.deadline)
        elif self.phase == HEAD:
            if self.head_bytes is None:  # not a byte of a request yet
                self.transport.close()
            else:
                seconds = self.limits.header_timeout
                self._refuse(
                    ProtocolError(408, "timeout", f"The request head took over {seconds:g} s")
                )
        elif self.cycle.response_complete:
            self.transport.close()  # answered without reading the body: stop reading it
        else:
            self.cycle.keep_alive = False  # close once the app has answered

    # -- answers -----------------------------------------------------------------------------

    def _refuse(self, error: ProtocolError) -> None:
        self.phase = None
        if not self.transport.is_closing():
            self.transport.write(self._answer(error))
            self.transport.close()

    def _answer(self, error: ProtocolError) -> bytes:
        """The refusal as the app would answer it on that path, closing the connection."""
        url: bytes = getattr(self, "url", b"")
        path = url.partition(b"?")[0].decode("latin-1") if len(url) < 2048 else "/"
        scope: dict[str, Any] = {
            "type": "http",
            "method": self.parser.get_method().decode("latin-1") if url else "GET",
            "path": path,
            "raw_path": path.encode("latin-1"),
            "query_string": b"",
            "root_path": "",
            "headers": [],
            "scheme": self.scheme,
            "server": self.server,
            "client": self.client,
        }
        request_id = assign_request_id(scope)
        request = Request(scope)
        adapter = any(path == p or path.startswith(p + "/") for p in ADAPTER_PREFIXES)
        response = error_envelope(request, error) if adapter else render_fhir_error(request, error)
        headers = [
            *self.server_state.default_headers,
            *response.raw_headers,
            (REQUEST_ID_HEADER, request_id.encode()),
            (b"connection", b"close"),
        ]
        head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        return STATUS_LINE[response.status_code] + head + b"\r\n" + bytes(response.body)
