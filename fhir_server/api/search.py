"""search-type: GET [type]?… and POST [type]/_search, answered with a searchset Bundle."""

from functools import lru_cache
from operator import attrgetter
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from ..resources import bundle
from ..resources.elements import subset
from ..resources.kinds import ResourceKind
from ..search.paging import SearchLimits, page_links, take_page
from ..search.parse import SearchRequest, parse_search
from ..storage.base import JobRecord
from .limits import InputLimits, check_query_encoding, check_search_size
from .records import store_of
from .responses import bundle_response
from .routing import Endpoint
from .urls import fhir_base


class SearchParser:
    """Checks and parses one kind's search parameters with the app's limits and secret.

    A GET search is parsed once per distinct query string (bounded LRU): pollers and page
    links repeat theirs, and parsing cost as much as running the query. A SearchRequest is
    never changed after parsing, and a rejected query string (an exception) is not cached.
    """

    def __init__(
        self, kind: ResourceKind, search: SearchLimits, inputs: InputLimits, secret: bytes
    ) -> None:
        self.kind = kind
        self.search_limits = search
        self.input_limits = inputs
        self.secret = secret
        self.parse_query_string = lru_cache(maxsize=1024)(self._parse_query_string)

    def _parse_query_string(self, query_string: bytes, strict: bool) -> SearchRequest:
        check_query_encoding(query_string, "query string")
        return self.parse(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True), strict)

    def parse(self, params: list[tuple[str, str]], strict: bool) -> SearchRequest:
        check_search_size(self.input_limits, params)
        return parse_search(
            params, kind=self.kind, limits=self.search_limits, secret=self.secret, strict=strict
        )


SIZE = attrgetter("size")  # a record's resource bytes


def search(kind: ResourceKind, parser: SearchParser) -> Endpoint:
    async def search(request: Request) -> Response:
        query_string: bytes = request.scope["query_string"]
        strict = "handling=strict" in request.headers.get("prefer", "").replace(" ", "")
        if request.method == "POST":
            check_query_encoding(query_string, "query string")
            check_query_encoding(await request.body(), "form body")
            form = await request.form()
            params = list(request.query_params.multi_items())
            params += [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
            parsed = parser.parse(params, strict)
        else:
            parsed = parser.parse_query_string(query_string, strict)
        searchset, weight = await run_search(request, kind, parsed, parser.secret)
        return bundle_response(request, searchset, weight)

    return search


async def run_search(
    request: Request, kind: ResourceKind, parsed: SearchRequest, secret: bytes
) -> tuple[dict[str, Any], int]:
    """The searchset Bundle and the bytes of its resources as stored."""
    store = store_of(request, kind)
    query = parsed.query
    total = await store.count(query) if parsed.total else None
    rows: list[JobRecord] = []
    if not parsed.count_only:
        rows = await store.search(parsed.page_query)
    page = take_page(query, rows, SIZE)
    base = fhir_base(request)
    if parsed.elements is None and parsed.summary is None:
        resources = [(r.id, r.body) for r in page.rows]
    else:
        resources = [
            (r.id, subset(kind, r.resource or {}, parsed.elements, parsed.summary))
            for r in page.rows
        ]
    url = f"{base}/{kind.type}"

    def link(paging: str) -> str:
        params = "&".join(p for p in (parsed.link_query, paging) if p)
        return f"{url}?{params}" if params else url

    def position(record: JobRecord) -> tuple[tuple[str | int, ...], str]:
        return tuple(record.index_value(k.column) for k in query.sort), record.id

    links = page_links(
        query,
        page,
        link=link,
        position=position,
        secret=secret,
        page_param=parsed.page_param,
        count_only=parsed.count_only,
    )
    searchset = bundle.searchset(
        base, kind.type, resources, total=total, links=links, warnings=parsed.warnings
    )
    return searchset, page.weight
