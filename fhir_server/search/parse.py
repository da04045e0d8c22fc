"""Parse FHIR search parameters (name, value pairs) into a SearchRequest."""

import re
from dataclasses import dataclass, field
from urllib.parse import urlencode

from ..resources.kinds import BASE, ID_PATTERN, ResourceKind, SearchParameter
from ..resources.outcome import FhirError, Issue
from .cursor import CursorError, decode_cursor
from .dates import parse_date_condition
from .paging import SearchLimits, page_size, store_query
from .query import Condition, Cursor, DateRange, JobQuery, Missing, SortKey, TokenMatch

# Parameters that shape the result rather than filter it.
RESULT_PARAMETERS = frozenset(
    {"_count", "_offset", "_sort", "_total", "_elements", "_summary", "_cursor"}
)
# Parameters answered by the HTTP layer (format negotiation).
HTTP_PARAMETERS = frozenset({"_format", "_pretty"})
SUMMARY_MODES = ("true", "false", "text", "data", "count")
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
# ASCII digits only: str.isdigit() and int() also take '²', '①' and '٣'. At most 18 of them,
# so the number fits the stores' 64-bit integers.
_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


@dataclass
class SearchRequest:
    query: JobQuery
    count_only: bool = False
    total: bool = True
    elements: tuple[str, ...] | None = None
    summary: str | None = None
    warnings: list[Issue] = field(default_factory=list)
    # The parameters that define the result set, for self/first/next links.
    link_params: list[tuple[str, str]] = field(default_factory=list)
    # Where in the result set this page is (`_cursor=…` or `_offset=…`), for its self link.
    page_param: str = ""
    # A parsed GET search is cached and reused, so what each of its pages needs is made once:
    # the link parameters encoded, and the query for one row more than the page (is there a
    # next page?).
    link_query: str = field(init=False)
    page_query: JobQuery = field(init=False)

    def __post_init__(self) -> None:
        self.link_query = urlencode(self.link_params)
        self.page_query = store_query(self.query)


def _bad(name: str, message: str) -> FhirError:
    return FhirError.of("invalid", f"Invalid search parameter '{name}': {message}", name)


def parse_search(
    params: list[tuple[str, str]],
    *,
    kind: ResourceKind,
    limits: SearchLimits,
    secret: bytes,
    strict: bool = False,
) -> SearchRequest:
    where: list[tuple[Condition, ...]] = []
    result: dict[str, tuple[str, str]] = {}
    warnings: list[Issue] = []
    link_params: list[tuple[str, str]] = []
    for raw_name, value in params:
        name, _, modifier = raw_name.partition(":")
        if name in HTTP_PARAMETERS:
            continue
        if name in RESULT_PARAMETERS:
            result[name] = (raw_name, value)
            if name not in ("_cursor", "_offset"):
                link_params.append((raw_name, value))
            continue
        definition = kind.parameters_by_name.get(name)
        if definition is None:
            message = f"Unknown search parameter '{raw_name}'"
            if strict:  # Prefer: handling=strict
                raise FhirError.of("not-supported", message, raw_name)
            warnings.append(Issue("not-supported", f"{message} was ignored", severity="warning"))
            continue
        if value == "":
            continue  # FHIR: an empty parameter value is ignored
        where.append(_parse_condition(definition, raw_name, modifier, value))
        link_params.append((raw_name, value))

    sort = _parse_sort(kind, result["_sort"][1]) if "_sort" in result else _default_sort(kind)
    count = limits.default_count
    if "_count" in result:
        count = page_size(_parse_int("_count", result["_count"][1], 0), limits)
    offset = 0
    if "_offset" in result:
        offset = _parse_int("_offset", result["_offset"][1], 0)
        if offset > limits.max_offset:
            raise _bad("_offset", f"must not exceed {limits.max_offset}; follow the next link")
    cursor: Cursor | None = None
    page_param = f"_offset={offset}" if offset else ""
    if "_cursor" in result:
        token = result["_cursor"][1]
        try:
            cursor = decode_cursor(token, sort, secret)
        except CursorError as exc:
            raise _bad("_cursor", str(exc)) from exc
        offset = 0
        page_param = urlencode([("_cursor", token)])
    total = True
    if "_total" in result:
        mode = result["_total"][1]
        if mode not in ("none", "estimate", "accurate"):
            raise _bad("_total", "expected none, estimate or accurate")
        total = mode != "none"
    summary = None
    if "_summary" in result:
        summary = result["_summary"][1]
        if summary not in SUMMARY_MODES:
            raise _bad("_summary", f"expected one of {', '.join(SUMMARY_MODES)}")
    elements = None
    if "_elements" in result:
        elements = tuple(e.strip() for e in result["_elements"][1].split(",") if e.strip())
    query = JobQuery(
        where=tuple(where),
        sort=sort,
        limit=count,
        offset=offset,
        cursor=cursor,
        max_bytes=limits.max_page_bytes,
    )
    return SearchRequest(
        query=query,
        count_only=count == 0 or summary == "count",
        total=total or count == 0 or summary == "count",
        elements=elements,
        summary=summary if summary not in (None, "false", "count") else None,
        warnings=warnings,
        link_params=link_params,
        page_param=page_param,
    )


def _default_sort(kind: ResourceKind) -> tuple[SortKey, ...]:
    return tuple(SortKey(column, descending) for column, descending in kind.default_sort)


def _parse_int(name: str, value: str, minimum: int) -> int:
    if not _WHOLE_NUMBER.fullmatch(value) or int(value) < minimum:
        raise _bad(name, f"expected a whole number >= {minimum}, got '{value}'")
    return int(value)


def _parse_sort(kind: ResourceKind, value: str) -> tuple[SortKey, ...]:
    by_name = kind.parameters_by_name
    keys = []
    for item in value.split(","):
        item = item.strip()
        descending = item.startswith("-")
        definition = by_name.get(item.lstrip("-"))
        if definition is None:
            raise _bad("_sort", f"cannot sort by '{item}'; sortable: {', '.join(by_name)}")
        keys.append(SortKey(definition.column, descending))
    return tuple(keys)


def _split_values(value: str) -> list[str]:
    return [v.replace("\\,", ",") for v in _UNESCAPED_COMMA.split(value)]


def _parse_condition(
    definition: SearchParameter, raw_name: str, modifier: str, value: str
) -> tuple[Condition, ...]:
    if modifier == "missing":
        if value not in ("true", "false"):
            raise _bad(raw_name, "expected true or false")
        if definition.name == "_id":
            raise _bad(raw_name, "every resource has an id")
        return (Missing(definition.column, value == "true"),)
    if definition.type == "date":
        if modifier:
            raise _bad(raw_name, f"unknown modifier ':{modifier}' for a date parameter")
        conditions: list[Condition] = []
        for item in _split_values(value):
            try:
                conditions.append(parse_date_condition(definition.column, item))
            except ValueError as exc:
                raise _bad(raw_name, str(exc)) from exc
        return tuple(conditions)
    if modifier not in ("", "not"):
        raise _bad(raw_name, f"unknown modifier ':{modifier}' for a token parameter")
    return _parse_token(definition, raw_name, value, negate=modifier == "not")


def _parse_token(
    definition: SearchParameter, raw_name: str, value: str, *, negate: bool
) -> tuple[Condition, ...]:
    codes: set[str] = set()
    any_code = False
    for item in _split_values(value):
        system, bar, code = item.rpartition("|")
        if not bar:
            codes.add(item)
        elif (system == "" or _is_system_of(definition, system)) and code:
            codes.add(code)
        elif _is_system_of(definition, system) and not code:
            any_code = True
        # any other system names codes this element never carries: it adds no match
    if definition.name == "_id":
        for code in codes:
            if not ID_PATTERN.fullmatch(code):
                raise _bad(raw_name, f"'{code}' is not a valid id")
    if any_code:
        return (Missing(definition.column, missing=negate),)
    return (TokenMatch(definition.column, frozenset(codes), negate=negate),)


def _is_system_of(definition: SearchParameter, system: str) -> bool:
    """Whether `system` names the code system of the parameter's codes. A code system of this
    server's own has a canonical URL under its FHIR base, which the parser does not know: it is
    recognised by its path under any base."""
    if definition.system is None:
        return False
    if definition.system.startswith(BASE):
        return "://" in system and system.endswith(definition.system.removeprefix(BASE))
    return system == definition.system


__all__ = ["DateRange", "SearchLimits", "SearchRequest", "parse_search"]
