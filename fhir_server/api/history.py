"""History: GET [type]/{id}/_history (history-instance) and GET [type]/_history (history-type).

Both answer a `history` Bundle, newest first, each entry with the request that wrote the
version. A type's history pages by signed keyset cursor like a search (`_count`, `next`, the
page's byte budget), is limited to the caller's own resources unless an admin, and has no
`total`: counting every version of every resource would cost more than the page. A large
Bundle is streamed.
"""

from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from ..resources import bundle
from ..resources.kinds import ResourceKind
from ..resources.outcome import FhirError
from ..search.history import parse_history
from ..search.paging import page_links, take_page
from ..storage.base import JobRecord
from .limits import check_query_encoding, check_search_size, input_limits
from .records import store_of, valid_id
from .responses import bundle_response
from .routing import Endpoint
from .search import SIZE
from .urls import fhir_base


def history(kind: ResourceKind) -> Endpoint:
    async def history(request: Request) -> Response:
        resource_id = valid_id(kind, request.path_params["id"])
        records = await store_of(request, kind).history(resource_id)
        if not records:
            raise FhirError.of("not-found", f"{kind.type}/{resource_id} is not known")
        base = fhir_base(request)
        # Each version as the store keeps it (not parsed; measuring a MongoDB one serializes
        # it once, for the answer too), the Bundle streamed when large.
        weight = sum(r.size for r in records)
        versions = [_version(r) for r in records]
        self_url = f"{base}/{kind.type}/{resource_id}/_history"
        history = bundle.history(
            base, kind.type, versions, total=len(versions), links=[("self", self_url)]
        )
        return bundle_response(request, history, weight)

    return history


def type_history(kind: ResourceKind) -> Endpoint:
    async def type_history(request: Request) -> Response:
        query_string: bytes = request.scope["query_string"]
        check_query_encoding(query_string, "query string")
        params = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
        check_search_size(input_limits(request), params)
        state = request.app.state
        parsed = parse_history(params, limits=state.search_limits, secret=state.secret)
        rows = await store_of(request, kind).versions(parsed.page_query)
        page = take_page(parsed.query, rows, SIZE)
        base = fhir_base(request)
        url = f"{base}/{kind.type}/_history"

        def link(paging: str) -> str:
            query = "&".join(p for p in (parsed.link_query, paging) if p)
            return f"{url}?{query}" if query else url

        def position(record: JobRecord) -> tuple[tuple[str | int, ...], str]:
            return (record.last_updated, record.id, record.version), record.id

        links = page_links(
            parsed.query,
            page,
            link=link,
            position=position,
            secret=state.secret,
            page_param=parsed.page_param,
            count_only=False,
        )
        versions = [_version(r) for r in page.rows]
        history = bundle.history(base, kind.type, versions, total=None, links=links)
        return bundle_response(request, history, page.weight)

    return type_history


def _version(record: JobRecord) -> bundle.Version:
    return bundle.Version(
        record.id, record.version, record.last_updated, record.body, record.method, record.created
    )
