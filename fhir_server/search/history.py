"""The parameters of a type's history (GET [type]/_history): `_since`, `_count`, the cursor.

R4's other history parameters (`_at`, `_list`) are refused rather than ignored: a client
would otherwise take the whole history for the answer to its question.
"""

import re
from dataclasses import dataclass, field
from urllib.parse import urlencode

from ..resources.instants import instant_of_ms, parse_date_range
from ..resources.outcome import FhirError
from .cursor import CursorError, decode_cursor
from .paging import SearchLimits, page_size, store_query
from .query import HISTORY_SORT, Cursor, HistoryQuery

# Parameters answered by the HTTP layer (format negotiation).
_HTTP_PARAMETERS = frozenset({"_format", "_pretty"})
_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


@dataclass
class HistoryRequest:
    query: HistoryQuery
    # The parameters that define the history (for self/first/next links), encoded.
    link_query: str = ""
    # Where this page is (`_cursor=…`), for its self link.
    page_param: str = ""
    page_query: HistoryQuery = field(init=False)

    def __post_init__(self) -> None:
        self.page_query = store_query(self.query)


def _bad(name: str, message: str) -> FhirError:
    return FhirError.of("invalid", f"Invalid history parameter '{name}': {message}", name)


def parse_history(
    params: list[tuple[str, str]], *, limits: SearchLimits, secret: bytes
) -> HistoryRequest:
    since: str | None = None
    count = limits.default_count
    cursor: Cursor | None = None
    link_params: list[tuple[str, str]] = []
    page_param = ""
    for name, value in params:
        if name in _HTTP_PARAMETERS:
            continue
        if name == "_since":
            try:
                since = instant_of_ms(parse_date_range(value)[0])
            except (ValueError, OverflowError) as exc:
                raise _bad(
                    name, f"expected an instant (e.g. 2026-01-01T00:00:00Z): {exc}"
                ) from None
            link_params.append((name, value))
        elif name == "_count":
            # ASCII digits only (isdigit alone takes '٣'), few enough for a 64-bit integer
            if not _WHOLE_NUMBER.fullmatch(value) or int(value) < 1:
                raise _bad(name, f"expected a whole number >= 1, got '{value[:40]}'")
            count = page_size(int(value), limits)
            link_params.append((name, value))
        elif name == "_cursor":
            try:
                cursor = decode_cursor(value, HISTORY_SORT, secret)
            except CursorError as exc:
                raise _bad(name, str(exc)) from None
            page_param = urlencode([(name, value)])
        else:
            raise FhirError.of(
                "not-supported",
                f"History parameter '{name[:40]}' is not supported; use _since, _count",
                name[:40],
            )
    query = HistoryQuery(since=since, limit=count, cursor=cursor, max_bytes=limits.max_page_bytes)
    return HistoryRequest(query, urlencode(link_params), page_param)
