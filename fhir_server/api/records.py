"""What the handlers of every resource kind share: the caller's store, ids, version headers
and the answer with a stored resource (conditional reads included)."""

from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache

from starlette.requests import Request
from starlette.responses import Response

from ..auth.ownership import visible_store
from ..resources.kinds import ID_PATTERN, ResourceKind
from ..resources.outcome import FhirError
from ..storage.base import JobRecord, JobStore
from .responses import fhir_response
from .routing import AUTH

_CONDITIONAL_HEADERS = frozenset({b"if-none-match", b"if-modified-since"})


def store_of(request: Request, kind: ResourceKind) -> JobStore:
    """The kind's store as the caller sees it: its own resources only, unless an admin."""
    state = request.app.state
    return visible_store(state.stores[kind.type], request.scope.get(AUTH), state.quota)


def valid_id(kind: ResourceKind, raw: str) -> str:
    if not ID_PATTERN.fullmatch(raw):
        raise FhirError.of("invalid", f"'{raw[:80]}' is not a valid {kind.type} id")
    return raw


async def load_live(request: Request, kind: ResourceKind) -> JobRecord:
    """The live resource the path names: invalid id, not-found, or deleted otherwise."""
    resource_id = valid_id(kind, request.path_params["id"])
    record = await store_of(request, kind).get(resource_id)
    if record is None:
        raise FhirError.of("not-found", f"{kind.type}/{resource_id} is not known")
    if record.deleted:
        raise FhirError.of("deleted", f"{kind.type}/{resource_id} was deleted")
    return record


def version_headers(record: JobRecord) -> dict[str, str]:
    headers = {"ETag": f'W/"{record.version}"'}
    if not record.deleted:
        headers["Last-Modified"] = last_modified(record)
    return headers


def last_modified(record: JobRecord) -> str:
    """meta.lastUpdated as an HTTP-date, from its index value (epoch ms) when the store read
    it: whole seconds repeat across resources where instants do not, so the cache hits."""
    epoch_ms = record.index_value("last_updated")
    assert isinstance(epoch_ms, int)
    return _http_date(epoch_ms // 1000)


@lru_cache(maxsize=4096)
def _http_date(epoch_seconds: int) -> str:
    return format_datetime(datetime.fromtimestamp(epoch_seconds, UTC), usegmt=True)


def resource_response(request: Request, record: JobRecord, status_code: int = 200) -> Response:
    headers = version_headers(record)
    # Most reads are unconditional: one scan of the raw headers spares two header lookups.
    for name, _ in request.scope["headers"]:
        if name in _CONDITIONAL_HEADERS:
            if _not_modified(request, record):
                return Response(status_code=304, headers=headers)
            break
    return fhir_response(request, record.body, status_code, headers)


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
