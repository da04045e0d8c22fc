"""The backend-neutral search query that every JobStore executes."""

from dataclasses import dataclass

# Stored in place of an absent value so that sort keys are never null.
MISSING_TOKEN = ""
MISSING_DATE = -(2**62)


@dataclass(frozen=True, slots=True)
class TokenMatch:
    """column IN values (or NOT IN when negate)."""

    column: str
    values: frozenset[str]
    negate: bool = False


@dataclass(frozen=True, slots=True)
class Missing:
    """column is absent (missing=True) or present (missing=False)."""

    column: str
    missing: bool


@dataclass(frozen=True, slots=True)
class DateRange:
    """column present and lower <= value < upper (epoch ms; None is unbounded).

    With negate, the value is present and outside the range.
    """

    column: str
    lower: int | None
    upper: int | None
    negate: bool = False


Condition = TokenMatch | Missing | DateRange


@dataclass(frozen=True, slots=True)
class SortKey:
    column: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Cursor:
    """Keyset position: the sort values and id of the row next to the page.

    forward pages start after it; backward pages end before it.
    """

    values: tuple[str | int, ...]
    id: str
    forward: bool = True


@dataclass(frozen=True, slots=True)
class JobQuery:
    """All of `where` (each entry any of its conditions), sorted, one page."""

    where: tuple[tuple[Condition, ...], ...] = ()
    sort: tuple[SortKey, ...] = (SortKey("last_updated", descending=True),)
    limit: int = 20
    offset: int = 0
    cursor: Cursor | None = None
    owner: str | None = None
    # The page's byte budget: a store stops reading rows once their resources weigh more
    # (see search/paging.py ReadBudget); None reads `limit` rows whatever they weigh.
    max_bytes: int | None = None


def full_sort(sort: tuple[SortKey, ...]) -> tuple[SortKey, ...]:
    """The sort, then the unique id tie-breaker; a column sorted twice counts the first time.

    The id goes the way of the last key before it: one index of (column, id), read forwards
    or backwards, then serves the column's sort both ways (an ascending id under a
    descending column would need a second index)."""
    keys: list[SortKey] = []
    for key in (*sort, SortKey("id", descending=bool(sort) and sort[-1].descending)):
        if all(k.column != key.column for k in keys):
            keys.append(key)
    return tuple(keys)


def cursor_position(sort: tuple[SortKey, ...], cursor: Cursor) -> tuple[str | int, ...]:
    """The cursor's value for each key of full_sort(sort) (it holds one per key of sort)."""
    by_column: dict[str, str | int] = {}
    for key, value in zip(sort, cursor.values, strict=False):
        by_column.setdefault(key.column, value)
    by_column.setdefault("id", cursor.id)
    return tuple(by_column[k.column] for k in full_sort(sort))


# Versions in a type's history, newest first; the id and version make the order total (two
# versions may be written in the same millisecond).
HISTORY_SORT = (
    SortKey("last_updated", descending=True),
    SortKey("id", descending=True),
    SortKey("version", descending=True),
)


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """One page of a type's history (every version of every resource), in HISTORY_SORT.

    `since` is an instant in the stores' fixed-width form (YYYY-MM-DDThh:mm:ss.sssZ), so
    stored instants compare with it as strings. A cursor holds (last updated, id, version).
    """

    since: str | None = None
    limit: int = 20
    cursor: Cursor | None = None
    owner: str | None = None
    # The page's byte budget, as a search's (see JobQuery.max_bytes).
    max_bytes: int | None = None
    # What paging reads of any query: a history pages by cursor only, in one order.
    offset: int = 0
    sort: tuple[SortKey, ...] = HISTORY_SORT
