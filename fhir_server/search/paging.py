"""Paging, in one place: the page size and its extra row, the byte budget, the keyset
direction, the links.

A page asks the store for one row more than it shows: that row says whether another page
follows. A backward page (the `previous` link) is read in the reversed sort order from the
cursor on, so the store returns it nearest-first; it is put back in sort order here. Stores
just return rows in the order the query asks for.

A page also has a byte budget (`max_page_bytes`): 1000 jobs of 1 MiB made pages of 1 GB,
read, held and serialized whole. A store stops reading once the resources it read weigh more
than the budget (ReadBudget), and the page keeps the rows within it (always at least one), so
its `next` link continues right after the last row shown, as after a short page.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from .cursor import encode_cursor
from .query import Cursor, HistoryQuery, JobQuery

Row = TypeVar("Row")
# What pages: a search, or a type's history (which pages by cursor only).
Query = TypeVar("Query", JobQuery, HistoryQuery)


@dataclass(frozen=True)
class SearchLimits:
    default_count: int = 20
    max_count: int = 1000
    max_offset: int = 10_000
    max_page_bytes: int | None = 4 * 1024 * 1024


def page_size(count: int, limits: SearchLimits) -> int:
    """The rows a page holds for `_count`: larger values are clamped, not refused."""
    return min(count, limits.max_count)


@dataclass(frozen=True)
class Page(Generic[Row]):
    rows: list[Row]
    # More rows lie beyond the page in the direction it was read.
    has_more: bool
    forward: bool
    # The bytes of the rows' resources (0 when the query has no byte budget).
    weight: int = 0


class ReadBudget:
    """A store's reading of one page against its byte budget: rows are read up to and
    including the first that takes their total past the budget (and at least two), so that
    take_page knows whether a row lies beyond the ones it keeps."""

    __slots__ = ("left", "read")

    def __init__(self, max_bytes: int) -> None:
        self.left = max_bytes
        self.read = 0

    def cut(self, sizes: Sequence[int]) -> int | None:
        """Of the next rows (their resources' sizes), how many to keep before the reading
        stops; None: all of them, and read on."""
        total = sum(sizes)
        if total <= self.left:  # the usual case: the budget has room for them all
            self.left -= total
            self.read += len(sizes)
            return None
        for taken, size in enumerate(sizes, start=1):
            self.read += 1
            self.left -= size
            if self.left < 0 and self.read >= 2:
                return taken
        return None


def store_query(query: Query) -> Query:
    """What to ask the store for: one row more than the page holds."""
    return replace(query, limit=query.limit + 1)


def is_forward(query: JobQuery | HistoryQuery) -> bool:
    return query.cursor is None or query.cursor.forward


def take_page(
    query: JobQuery | HistoryQuery, rows: Sequence[Row], size: Callable[[Row], int]
) -> Page[Row]:
    """The page in sort order, from the rows the store returned for store_query(query):
    up to query.limit rows, within its byte budget (`size` gives a row's resource bytes)."""
    forward = is_forward(query)
    keep = query.limit
    weight = 0
    if query.max_bytes is not None:
        sizes = list(map(size, rows))
        cut = ReadBudget(query.max_bytes).cut(sizes)
        if cut is not None:  # the row at `cut` went past the budget: the page ends before it
            keep = min(keep, max(cut - 1, 1))
        weight = sum(sizes[:keep])
    page = list(rows[:keep])
    if not forward:
        page.reverse()
    return Page(page, len(rows) > keep, forward, weight)


def page_links(
    query: JobQuery | HistoryQuery,
    page: Page[Row],
    *,
    link: Callable[[str], str],
    position: Callable[[Row], tuple[tuple[str | int, ...], str]],
    secret: bytes,
    page_param: str,
    count_only: bool,
) -> list[tuple[str, str]]:
    """self, first, and next/previous where they lead somewhere.

    `link` turns the paging parameter (`_cursor=…`, `_offset=…` or "") into a URL; `position`
    gives a row's sort values and id, which a cursor holds.
    """

    def at(row: Row, forward: bool) -> str:
        values, row_id = position(row)
        cursor = Cursor(values, row_id, forward)
        # A cursor is URL-safe base64: nothing in it needs percent-encoding.
        return f"_cursor={encode_cursor(cursor, query.sort, secret)}"

    links = [("self", link(page_param)), ("first", link(""))]
    if count_only or not page.rows:
        return links
    if page.has_more or not page.forward:
        links.append(("next", link(at(page.rows[-1], forward=True))))
    if query.cursor is not None and (page.forward or page.has_more):
        links.append(("previous", link(at(page.rows[0], forward=False))))
    elif query.offset:
        links.append(("previous", link(f"_offset={max(query.offset - query.limit, 0)}")))
    return links
