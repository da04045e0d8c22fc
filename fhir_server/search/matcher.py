"""A JobQuery's filter evaluated against one resource, in memory: what a store's search would
answer for it. Subscriptions match each changed job with it; tests/notifications/
test_matcher_parity.py holds its answers equal to both stores' searches."""

from typing import Any

from ..resources.asyncjob import ASYNC_JOB
from ..resources.instants import parse_instant_ms
from ..resources.kinds import ResourceKind, SearchParameter
from .query import MISSING_DATE, MISSING_TOKEN, Condition, DateRange, JobQuery, Missing, TokenMatch


def matches(
    query: JobQuery,
    subject: Any,
    kind: ResourceKind = ASYNC_JOB,
    values: dict[str, str | int] | None = None,
) -> bool:
    """Whether the resource is among the query's matches (its sort and paging aside).

    `subject` is the resource's JSON, or a record with `resource` and `owner` (a JobRecord; a
    store Change, whose `matched` is used: a deletion is matched by what it deleted). With
    the query's owner set, a resource of another owner, or of none, never matches.
    `values`: the resource's index values worked out so far, shared by the calls that match
    one resource against many queries."""
    if isinstance(subject, dict):
        resource: dict[str, Any] | None = subject
        owner = None
    elif hasattr(subject, "matched"):
        resource, owner = subject.matched, subject.owner
    else:
        resource, owner = subject.resource, subject.owner
    if resource is None:
        return False
    if query.owner is not None and owner != query.owner:
        return False
    if values is None:
        values = {}
    for any_of in query.where:
        if not any(_holds(c, _value(resource, kind, c.column, values)) for c in any_of):
            return False
    return True


def value_of(
    subject: Any, kind: ResourceKind, column: str, values: dict[str, str | int]
) -> str | int | None:
    """The index value of `column` for a subject as `matches` reads it (None: no resource)."""
    resource = subject if isinstance(subject, dict) else getattr(subject, "matched", None)
    return None if resource is None else _value(resource, kind, column, values)


def _value(
    resource: dict[str, Any], kind: ResourceKind, column: str, values: dict[str, str | int]
) -> str | int:
    """The parameter's value as the stores index it (storage/base.py index_values): absent
    values as the sentinels, dates as epoch ms."""
    if column not in values:
        values[column] = index_value(resource, kind.parameters_by_column[column])
    return values[column]


def index_value(resource: dict[str, Any], parameter: SearchParameter) -> str | int:
    value: Any = resource
    for key in parameter.path:
        value = value.get(key) if isinstance(value, dict) else None
    if parameter.type == "date":
        return MISSING_DATE if value is None else parse_instant_ms(value)
    return MISSING_TOKEN if value is None else str(value)


def _holds(condition: Condition, value: str | int) -> bool:
    if isinstance(condition, TokenMatch):
        return (value in condition.values) != condition.negate
    if isinstance(condition, Missing):
        return (value in (MISSING_TOKEN, MISSING_DATE)) == condition.missing
    return _in_range(condition, value)


def _in_range(condition: DateRange, value: str | int) -> bool:
    assert isinstance(value, int)
    if value == MISSING_DATE:
        return False
    lower, upper = condition.lower, condition.upper
    if condition.negate:
        return (lower is not None and value < lower) or (upper is not None and value >= upper)
    return (lower is None or value >= lower) and (upper is None or value < upper)
