"""FHIR JSON responses: content negotiation (_format, Accept) and orjson rendering.

A large Bundle is sent in chunks (bundle_response, bundle_chunks): serialized whole, a page
of large resources was one more copy of them all in memory, and indenting one (`_pretty`)
held the event loop for about 13 ms per 4.5 MiB; in chunks each serialization is bounded and
the body never exists in one piece.
"""

import asyncio
from collections.abc import AsyncIterator, Mapping
from functools import lru_cache
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .http_status import ProtocolError

FHIR_JSON = "application/fhir+json"
_JSON_TYPES = {
    "json": FHIR_JSON,
    "application/json": "application/json",
    "application/fhir+json": FHIR_JSON,
    "application/json+fhir": FHIR_JSON,
    "text/json": "application/json",
}
_WILDCARDS = ("*/*", "application/*")
# A Bundle whose resources weigh more than this is streamed, in chunks of about CHUNK_BYTES.
STREAM_BYTES = 1024 * 1024
CHUNK_BYTES = 256 * 1024
# The FHIR version this server speaks, as a media type's fhirVersion parameter names it
# (R4's versioning: 4.0 is the version, 4.0.1 the release; either is fine).
FHIR_VERSIONS = frozenset({"4.0", "4.0.1"})


class FhirResponse(Response):
    media_type = FHIR_JSON

    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        media_type: str = FHIR_JSON,
        pretty: bool = False,
    ) -> None:
        self.pretty = pretty
        super().__init__(content, status_code, headers, f"{media_type}; charset=utf-8")

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        # Starlette's version checks every header for a caller's own Content-Length or
        # Content-Type; FHIR handlers never set those, so the raw list is built directly.
        raw = [(b"content-type", _encoded(self.media_type))]
        if self.status_code >= 200 and self.status_code not in (204, 304):
            raw.append((b"content-length", str(len(self.body)).encode()))
        if headers:
            raw += [(_header_name(k), v.encode("latin-1")) for k, v in headers.items()]
        self.raw_headers = raw

    def render(self, content: Any) -> bytes:
        body = orjson.dumps(content)
        if self.pretty:  # stored resources are embedded as they are (orjson.Fragment): reindent
            body = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)
        return body


@lru_cache(maxsize=16)
def _encoded(media_type: str) -> bytes:
    return media_type.encode("latin-1")


@lru_cache(maxsize=64)  # handlers set a handful of header names: ETag, Last-Modified, ...
def _header_name(name: str) -> bytes:
    return name.lower().encode("latin-1")


def negotiate(request: Request) -> tuple[str, bool]:
    """The media type to answer with and whether to indent; FhirError 406 if not JSON."""
    accept = _accept_header(request.scope["headers"])
    query = request.scope["query_string"]
    if b"_format" not in query and b"_pretty" not in query:  # most requests: no parsing
        return _for_accept(accept), False
    pretty = request.query_params.get("_pretty") == "true"
    fmt = request.query_params.get("_format")
    if fmt is not None:
        media, version = media_range(fmt)
        media_type = _JSON_TYPES.get(media) if version in (None, *FHIR_VERSIONS) else None
        if media_type is None:
            raise ProtocolError(406, "not-supported", f"Format '{fmt}' is not supported; use json")
        return media_type, pretty
    return _for_accept(accept), pretty


def _accept_header(headers: list[tuple[bytes, bytes]]) -> str:
    """The (first) Accept header straight from the ASGI scope, as request.headers.get would
    give it, without building a Headers object on every request."""
    for name, value in headers:
        if name == b"accept":
            return value.decode("latin-1")
    return ""


@lru_cache(maxsize=256)
def _for_accept(accept: str) -> str:
    """The media type for an Accept header (clients send a handful of distinct ones)."""
    if not accept.strip():
        return FHIR_JSON
    offered = [media_range(part) for part in accept.split(",")]
    acceptable = [media for media, version in offered if version in (None, *FHIR_VERSIONS)]
    for media in acceptable:
        if media in _JSON_TYPES:
            return _JSON_TYPES[media]
    if any(media in _WILDCARDS for media in acceptable):
        return FHIR_JSON
    if len(acceptable) < len(offered):
        raise ProtocolError(
            406,
            "not-supported",
            f"Cannot answer in '{accept[:100]}'; this server speaks FHIR R4 (fhirVersion=4.0)",
        )
    raise ProtocolError(
        406, "not-supported", f"Cannot answer in '{accept[:100]}'; this server speaks JSON"
    )


def media_range(part: str) -> tuple[str, str | None]:
    """(media type, its fhirVersion parameter if any) of one Accept entry."""
    media, *parameters = part.split(";")
    version = None
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "fhirversion":
            version = value.strip().strip('"')
    return media.strip().lower(), version


def fhir_response(
    request: Request, content: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> FhirResponse:
    media_type, pretty = negotiate(request)
    return FhirResponse(content, status_code, headers, media_type, pretty)


def bundle_response(request: Request, bundle: dict[str, Any], weight: int) -> Response:
    """The Bundle (its `entry` last), streamed when its resources weigh more than
    STREAM_BYTES (`weight`: their bytes as stored); else rendered whole, as fhir_response."""
    media_type, pretty = negotiate(request)
    if weight <= STREAM_BYTES or not bundle.get("entry"):
        return FhirResponse(bundle, 200, None, media_type, pretty)
    return StreamingResponse(
        bundle_chunks(bundle, pretty), media_type=f"{media_type}; charset=utf-8"
    )


async def bundle_chunks(bundle: dict[str, Any], pretty: bool) -> AsyncIterator[bytes]:
    """The bytes FhirResponse would render for bundle, in chunks of about CHUNK_BYTES: the
    Bundle without its entries, then the entries a few at a time. The loop gets a turn after
    each chunk (a send that need not wait for the client would not give it one)."""
    entries = bundle["entry"]
    head = {k: v for k, v in bundle.items() if k != "entry"}
    if pretty:
        # orjson's indentation: "entry" one level in, each entry two.
        yield orjson.dumps(head, option=orjson.OPT_INDENT_2)[:-2] + b',\n  "entry": [\n'
        separator, end = b",\n", b"\n  ]\n}"
    else:
        yield orjson.dumps(head)[:-1] + b',"entry":['
        separator, end = b",", b"]}"
    chunk: list[bytes] = []
    weight = 0
    last = len(entries) - 1
    for index, entry in enumerate(entries):
        rendered = _pretty_entry(entry) if pretty else orjson.dumps(entry)
        chunk.append(rendered)
        weight += len(rendered)
        if weight >= CHUNK_BYTES:
            yield separator.join(chunk) + (b"" if index == last else separator)
            chunk, weight = [], 0
            await asyncio.sleep(0)
    yield separator.join(chunk) + end


def _pretty_entry(entry: dict[str, Any]) -> bytes:
    # Stored resources are embedded as they are (orjson.Fragment): parsed to be indented.
    indented = orjson.dumps(orjson.loads(orjson.dumps(entry)), option=orjson.OPT_INDENT_2)
    return b"    " + indented.replace(b"\n", b"\n    ")
