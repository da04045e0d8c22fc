"""FHIR REST handlers for AsyncJob: read, vread, history, search, metadata."""

from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..auth.ownership import visible_store
from ..resources import bundle
from ..resources.asyncjob import ID_PATTERN, RESOURCE_TYPE
from ..resources.capability import capability_statement
from ..resources.elements import subset
from ..resources.outcome import FhirError
from ..search.cursor import encode_cursor
from ..search.parse import SearchLimits, SearchRequest, parse_search
from ..search.query import Cursor
from ..storage.base import JobRecord, JobStore
from .limits import InputLimits, check_query_encoding, check_search_size
from .responses import fhir_response

BASE_PATH = "/fhir/R4"
INTERACTIONS = (
    "read",
    "vread",
    "history-instance",
    "search-type",
    "create",
    "update",
    "delete",
)


def store_of(request: Request) -> JobStore:
    """The store as the caller sees it: its own jobs only, unless it is an admin."""
    return visible_store(request.app.state.store, request.scope.get("auth"))


def fhir_base(request: Request) -> str:
    """The FHIR base URL as the client addressed it, for fullUrl and links."""
    scope = request.scope
    key = (
        scope.get("scheme"),
        request.headers.get("host"),
        scope.get("root_path"),
        scope.get("server"),
    )
    base = _BASES.get(key)
    if base is None:  # building request.base_url costs more than the rest of a read
        if len(_BASES) >= 256:  # the Host header is the client's: keep the cache bounded
            _BASES.clear()
        base = _BASES[key] = str(request.base_url).rstrip("/") + BASE_PATH
    return base


_BASES: dict[tuple[Any, ...], str] = {}


def valid_id(raw: str) -> str:
    if not ID_PATTERN.fullmatch(raw):
        raise FhirError.of(400, "invalid", f"'{raw[:80]}' is not a valid AsyncJob id")
    return raw


async def load_job(request: Request) -> JobRecord:
    """The live job the path names: 400 bad id, 404 unknown, 410 deleted."""
    job_id = valid_id(request.path_params["id"])
    record = await store_of(request).get(job_id)
    if record is None:
        raise FhirError.of(404, "not-found", f"AsyncJob/{job_id} is not known")
    if record.deleted:
        raise FhirError.of(410, "deleted", f"AsyncJob/{job_id} was deleted")
    return record


def version_headers(record: JobRecord) -> dict[str, str]:
    headers = {"ETag": f'W/"{record.version}"'}
    if not record.deleted:
        headers["Last-Modified"] = last_modified(record)
    return headers


def last_modified(record: JobRecord) -> str:
    """meta.lastUpdated as an HTTP-date, from its index value (epoch ms) when the store read
    it: whole seconds repeat across jobs where instants do not, so the cache keeps hitting."""
    epoch_ms = record.index_value("last_updated")
    assert isinstance(epoch_ms, int)
    return _http_date(epoch_ms // 1000)


@lru_cache(maxsize=4096)
def _http_date(epoch_seconds: int) -> str:
    return format_datetime(datetime.fromtimestamp(epoch_seconds, UTC), usegmt=True)


def _not_modified(request: Request, record: JobRecord) -> bool:
    etag = f'W/"{record.version}"'
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {t.strip() for t in if_none_match.split(",")}
        return bool(tags & {etag, f'"{record.version}"', "*"})
    if_modified_since = request.headers.get("if-modified-since")
    if if_modified_since is not None:
        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False
        modified = parsedate_to_datetime(last_modified(record))
        return modified <= since
    return False


_CONDITIONAL_HEADERS = frozenset({b"if-none-match", b"if-modified-since"})


def resource_response(request: Request, record: JobRecord, status_code: int = 200) -> Response:
    headers = version_headers(record)
    # Most reads are unconditional: one scan of the raw headers spares two header lookups.
    for name, _ in request.scope["headers"]:
        if name in _CONDITIONAL_HEADERS:
            if _not_modified(request, record):
                return Response(status_code=304, headers=headers)
            break
    return fhir_response(request, record.body, status_code, headers)


async def read(request: Request) -> Response:
    return resource_response(request, await load_job(request))


async def vread(request: Request) -> Response:
    job_id = valid_id(request.path_params["id"])
    raw_version = request.path_params["vid"]
    if not raw_version.isdigit() or int(raw_version) < 1:
        raise FhirError.of(400, "invalid", f"'{raw_version[:20]}' is not a version id")
    record = await store_of(request).get_version(job_id, int(raw_version))
    if record is None:
        raise FhirError.of(
            404, "not-found", f"AsyncJob/{job_id}/_history/{raw_version} is not known"
        )
    if record.deleted:
        gone = FhirError.of(410, "deleted", f"AsyncJob/{job_id} was deleted in {raw_version}")
        gone.headers.update(version_headers(record))
        raise gone
    return resource_response(request, record)


async def history(request: Request) -> Response:
    job_id = valid_id(request.path_params["id"])
    records = await store_of(request).history(job_id)
    if not records:
        raise FhirError.of(404, "not-found", f"AsyncJob/{job_id} is not known")
    base = fhir_base(request)
    return fhir_response(
        request, bundle.history(base, records, self_url=f"{base}/{RESOURCE_TYPE}/{job_id}/_history")
    )


async def search(request: Request) -> Response:
    query_string: bytes = request.scope["query_string"]
    strict = "handling=strict" in request.headers.get("prefer", "").replace(" ", "")
    parser: SearchParser = request.app.state.search_parser
    if request.method == "POST":
        check_query_encoding(query_string, "query string")
        check_query_encoding(await request.body(), "form body")
        form = await request.form()
        params = list(request.query_params.multi_items())
        params += [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        parsed = parser.parse(params, strict)
    else:
        parsed = parser.parse_query_string(query_string, strict)
    return fhir_response(request, await run_search(request, parsed))


class SearchParser:
    """Checks and parses search parameters with the app's limits and cursor secret.

    A GET search is parsed once per distinct query string (bounded LRU): pollers and page
    links repeat theirs, and parsing cost as much as running the query. A SearchRequest is
    never changed after parsing, and a rejected query string (an exception) is not cached.
    """

    def __init__(self, search: SearchLimits, inputs: InputLimits, secret: bytes) -> None:
        self.search_limits = search
        self.input_limits = inputs
        self.secret = secret
        self.parse_query_string = lru_cache(maxsize=1024)(self._parse_query_string)

    def _parse_query_string(self, query_string: bytes, strict: bool) -> SearchRequest:
        check_query_encoding(query_string, "query string")
        return self.parse(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True), strict)

    def parse(self, params: list[tuple[str, str]], strict: bool) -> SearchRequest:
        check_search_size(self.input_limits, params)
        return parse_search(params, limits=self.search_limits, secret=self.secret, strict=strict)


async def run_search(request: Request, parsed: SearchRequest) -> dict[str, Any]:
    store = store_of(request)
    query = parsed.query
    total = await store.count(query) if parsed.total else None
    records: list[JobRecord] = []
    has_more = False
    if not parsed.count_only:
        records = await store.search(parsed.page_query)
        has_more = len(records) > query.limit
        forward = query.cursor is None or query.cursor.forward
        if has_more:
            records = records[: query.limit] if forward else records[1:]
    base = fhir_base(request)
    if parsed.elements is None and parsed.summary is None:
        resources = [(r.id, r.body) for r in records]
    else:
        resources = [
            (r.id, subset(r.resource or {}, parsed.elements, parsed.summary)) for r in records
        ]
    return bundle.searchset(
        base,
        resources,
        total=total,
        links=_page_links(request, base, parsed, records, has_more),
        warnings=parsed.warnings,
    )


def _page_links(
    request: Request,
    base: str,
    parsed: SearchRequest,
    records: list[JobRecord],
    has_more: bool,
) -> list[tuple[str, str]]:
    query = parsed.query
    url = f"{base}/{RESOURCE_TYPE}"
    secret: bytes = request.app.state.secret
    common = parsed.link_query

    def link(extra: str) -> str:
        params = "&".join(p for p in (common, extra) if p)
        return f"{url}?{params}" if params else url

    def at(record: JobRecord, forward: bool) -> str:
        values = tuple(record.index_value(k.column) for k in query.sort)
        cursor = Cursor(values, record.id, forward)
        # A cursor is URL-safe base64: nothing in it needs percent-encoding.
        return f"_cursor={encode_cursor(cursor, query.sort, secret)}"

    links = [("self", link(parsed.page_param)), ("first", link(""))]
    if parsed.count_only or not records:
        return links
    forward = query.cursor is None or query.cursor.forward
    if has_more or not forward:
        links.append(("next", link(at(records[-1], forward=True))))
    if query.cursor is not None and (forward or has_more):
        links.append(("previous", link(at(records[0], forward=False))))
    elif query.offset:
        links.append(("previous", link(f"_offset={max(query.offset - query.limit, 0)}")))
    return links


async def metadata(request: Request) -> Response:
    return fhir_response(request, capability_statement(fhir_base(request), INTERACTIONS))


# The leading routes that HotRoutes may dispatch directly: read and GET search.
HOT_ROUTES = 2


def routes() -> list[BaseRoute]:
    # Read and search first: the router tries routes in order, and a GET on .../_search
    # reached the read route before too (the POST-only route matched it only partially).
    return [
        Route(f"{BASE_PATH}/{RESOURCE_TYPE}/{{id}}", read, methods=["GET"]),
        Route(f"{BASE_PATH}/{RESOURCE_TYPE}", search, methods=["GET"]),
        Route(f"{BASE_PATH}/metadata", metadata, methods=["GET"]),
        Route(f"{BASE_PATH}/{RESOURCE_TYPE}/_search", search, methods=["POST"]),
        Route(f"{BASE_PATH}/{RESOURCE_TYPE}/{{id}}/_history", history, methods=["GET"]),
        Route(f"{BASE_PATH}/{RESOURCE_TYPE}/{{id}}/_history/{{vid}}", vread, methods=["GET"]),
    ]
