"""FHIR date search values: prefixes and partial dates as ranges (epoch milliseconds)."""

from ..resources.instants import parse_date_range
from .query import DateRange

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")


def parse_date_condition(column: str, raw: str) -> DateRange:
    """`ge2024-05`, `2024-05-01T10:00:00Z`, ... as a DateRange on `column`."""
    prefix = raw[:2] if raw[:2] in PREFIXES else "eq"
    value = raw[2:] if raw[:2] in PREFIXES else raw
    start, end = parse_date_range(value)
    if prefix == "eq":
        return DateRange(column, start, end)
    if prefix == "ne":
        return DateRange(column, start, end, negate=True)
    if prefix in ("gt", "sa"):
        return DateRange(column, end, None)
    if prefix in ("lt", "eb"):
        return DateRange(column, None, start)
    if prefix == "ge":
        return DateRange(column, start, None)
    return DateRange(column, None, end)  # le
